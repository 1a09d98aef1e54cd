"""The ONNX Runtime peer: HF's GPT-2 exported with its KV cache; ORT's logits against the float64 reference,
its greedy tokens against HF's, a bench with it beside ours, and a bench without it installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arraygpt.benchmarks.records import Scenario
from helpers import cli

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'arraygpt[peers]'; "
                    ".ci/run installs it)")
pytest.importorskip("onnx", reason="onnx (the exporter's output format) is not installed")


def test_ort_logits_are_within_1e_4_of_the_float64_reference():
    from arraygpt.benchmarks.runners.ort import OrtRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    from arraygpt.engine import load_model
    prompt = fixed_prompts(2, 16, 50257, seed=1)
    expected = np.asarray(load_model("tiny", backend="numpy", dtype="float64").logits(prompt))
    got = OrtRunner().parity_logits("tiny", "float32", prompt)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4


def test_ort_greedy_tokens_through_its_kv_cache_equal_hf_greedy_tokens():
    import torch
    from transformers import GPT2LMHeadModel

    from arraygpt.benchmarks.runners.ort import OrtRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    from arraygpt.engine.source import resolve_model
    prompts = fixed_prompts(3, 12, 50257, seed=4)
    hf = GPT2LMHeadModel.from_pretrained(resolve_model("tiny").directory, dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(3, 12, dtype=torch.long), do_sample=False,
                           max_new_tokens=20, eos_token_id=None, pad_token_id=0)[:, 12:].tolist()
    scenario = Scenario(group="t", model="tiny", runner="ort", device=None, dtype="float32", batch=3, prompt_len=12,
                        new_tokens=20)
    runner = OrtRunner()
    got = runner.run("tiny", prompts, 20, lambda: None)
    assert got == want and len({tuple(row) for row in got}) > 1
    assert runner.generate_ids(scenario) == runner.run("tiny", fixed_prompts(3, 12, 50257), 20, lambda: None)


def test_bench_runs_the_ort_peer_beside_ours(tmp_path):
    out = tmp_path / "r.json"
    result = cli("bench", "--models", "tiny", "--backends", "numpy", "--peer", "ort", "--no-roofline",
                 "--batch-sizes", "1", "--prompt-lens", "16", "--new-tokens", "16", "--weights", "float32,float16",
                 "--dtypes", "float32", "--json", out, "--suite", "ci")
    assert result.returncode == 0, result.stderr
    rows = {r["id"]: r for r in json.loads(out.read_text())["results"]}
    peer = rows["tiny/ort/float32/b1/p16/n16"]
    assert peer["status"] == "ok" and peer["derived"]["parity_relative"] < 1e-4
    assert "tiny/ort/float32+float16-weights/b1/p16/n16" not in rows  # a float32 graph only
    ours = rows["tiny/numpy/float32/b1/p16/n16"]
    assert ours["derived"]["decode_tps_vs_ort"] == pytest.approx(
        ours["metrics"]["decode_tps"]["median"] / peer["metrics"]["decode_tps"]["median"])


def test_ort_runs_the_llama_family_with_hf_greedy_tokens_and_reference_logits():
    """tiny-llama (grouped heads: the past is [B, 2, S, 16], Llama 3's rope scaling, an untied head) exported from
    HF's LlamaForCausalLM: greedy tokens through ORT's cache equal HF's, logits the float64 reference's."""
    import torch
    from transformers import AutoModelForCausalLM

    from arraygpt.benchmarks.runners.ort import OrtRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    from arraygpt.engine import load_model
    from arraygpt.engine.source import resolve_model
    prompts = fixed_prompts(3, 12, 4096, seed=4)
    hf = AutoModelForCausalLM.from_pretrained(resolve_model("tiny-llama").directory, dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(3, 12, dtype=torch.long), do_sample=False,
                           max_new_tokens=16, eos_token_id=None, pad_token_id=0)[:, 12:].tolist()
    runner = OrtRunner()
    assert runner.run("tiny-llama", prompts, 16, lambda: None) == want
    prompt = fixed_prompts(2, 16, 4096, seed=1)
    expected = np.asarray(load_model("tiny-llama", backend="numpy", dtype="float64").logits(prompt))
    got = runner.parity_logits("tiny-llama", "float32", prompt)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-4
