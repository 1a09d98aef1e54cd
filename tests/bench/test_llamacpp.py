"""The llama.cpp peer: the GGUF conversion (read back with gguf's own reader), llama.cpp's greedy tokens
against Hugging Face's, its logits against the float64 reference, and a bench without it installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arraygpt.benchmarks.records import Scenario
from helpers import cli

gguf = pytest.importorskip("gguf", reason="the gguf package (the peers extra) is not installed")


@pytest.fixture(scope="module")
def tiny_dir():
    from arraygpt.engine.source import resolve_model
    return resolve_model("tiny").directory


def hf_layout(directory):
    """The checkpoint's tensors as llama.cpp lays them out, computed here from safetensors' own reader."""
    from safetensors.numpy import load_file
    stored = load_file(str(directory / "model.safetensors"))
    out = {}
    for name, data in stored.items():
        bare = name.removeprefix("transformer.")
        if bare.endswith((".attn.bias", ".attn.masked_bias")) or bare == "lm_head.weight":
            continue
        if bare.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            data = data.T
        out[bare] = data
    return out


@pytest.mark.parametrize("file_type, tolerance", [("F32", 0), ("F16", 1e-3), ("BF16", 8e-3), ("Q8_0", 1e-2)])
def test_the_gguf_file_round_trips_the_tensors(tiny_dir, tmp_path, file_type, tolerance):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from arraygpt.benchmarks.runners.gguf_export import gguf_name, write_gguf
    path = write_gguf(tiny_dir, tmp_path / "m.gguf", file_type)
    reader = GGUFReader(path)
    read = {t.name: t for t in reader.tensors}
    expected = hf_layout(tiny_dir)
    assert set(read) == {gguf_name(name) for name in expected}
    for name, want in expected.items():
        tensor = read[gguf_name(name)]
        got = dequantize(tensor.data, tensor.tensor_type).reshape(want.shape)
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= tolerance * scale, (name, file_type)
        if want.ndim == 1:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32  # norms and biases stay float32
    fields = reader.fields
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "gpt2"
    assert int(fields["gpt2.block_count"].parts[-1][0]) == 2
    assert len(fields["tokenizer.ggml.tokens"].data) == 50257


llama_cpp = None
try:
    import llama_cpp  # noqa: F401
except ImportError:
    pass
needs_llama = pytest.mark.skipif(llama_cpp is None, reason="llama-cpp-python is not installed "
                                 "(pip install 'arraygpt[peers]'; .ci/run installs it)")


@needs_llama
def test_llamacpp_f32_greedy_tokens_equal_hf_greedy_tokens(tiny_dir):
    import torch
    from transformers import GPT2LMHeadModel

    from arraygpt.benchmarks.runners.llamacpp import LlamaCppRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    scenario = Scenario(group="t", model="tiny", runner="llamacpp", device=None, dtype="float32", batch=1, prompt_len=12,
                        new_tokens=24)
    prompt = fixed_prompts(1, 12, 50257)
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf.generate(torch.tensor(prompt), attention_mask=torch.ones(1, 12, dtype=torch.long), do_sample=False,
                           max_new_tokens=24, eos_token_id=None, pad_token_id=0)[0, 12:].tolist()
    assert LlamaCppRunner().generate_ids(scenario) == want


# llama.cpp's F32 is not IEEE float32 throughout: its CPU GELU rounds the input to float16 and reads a
# float16 table (GGML_GELU_FP16 in ggml-cpu/vec.h), 2.3e-4 of max |logit| here where ours is 5e-7; so a
# float16-sized tolerance, 1e-3, for its float32 rows.
@needs_llama
def test_llamacpp_parallel_sequences_give_each_prompt_hf_greedy_tokens(tiny_dir):
    """A batch through llama.cpp's batch API (one sequence id a row, one decode a step) against HF's greedy
    generate() of the same batch."""
    import torch
    from transformers import GPT2LMHeadModel

    from arraygpt.benchmarks.runners.llamacpp import LlamaCppRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    scenario = Scenario(group="t", model="tiny", runner="llamacpp", device=None, dtype="float32", batch=3, prompt_len=12,
                        new_tokens=20)
    prompts = fixed_prompts(3, 12, 50257)
    hf = GPT2LMHeadModel.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(3, 12, dtype=torch.long), do_sample=False,
                           max_new_tokens=20, eos_token_id=None, pad_token_id=0)[:, 12:].tolist()
    assert LlamaCppRunner().generate_ids(scenario) == want


@needs_llama
@pytest.mark.parametrize("weights, tolerance", [("float32", 1e-3), ("bfloat16", 3e-2), ("q8_0", 6e-2)])
def test_llamacpp_logits_match_the_float64_reference(weights, tolerance):
    from arraygpt.benchmarks.runners.llamacpp import LlamaCppRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    from arraygpt.engine import load_model
    prompt = fixed_prompts(1, 16, 50257, seed=1)
    expected = np.asarray(load_model("tiny", backend="numpy", dtype="float64").logits(prompt))
    got = LlamaCppRunner().parity_logits("tiny", "float32", prompt, weights)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() / np.abs(expected).max() < tolerance


@needs_llama
def test_bench_runs_the_llamacpp_peer_beside_ours(tmp_path):
    out = tmp_path / "r.json"
    result = cli("bench", "--models", "tiny", "--backends", "numpy", "--peer", "llamacpp",
                 "--batch-sizes", "1,2", "--prompt-lens", "16", "--new-tokens", "32", "--weights", "float32,float16",
                 "--dtypes", "float32", "--json", out, "--suite", "ci")
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    rows = {r["id"]: r for r in doc["results"]}
    peer = rows["tiny/llamacpp/float32/b1/p16/n32"]
    assert peer["status"] == "ok" and peer["metrics"]["decode_tps"]["median"] > 0
    assert rows["tiny/llamacpp/float32/b2/p16/n32"]["status"] == "ok"  # two parallel sequences
    ours = rows["tiny/numpy/float32/b1/p16/n32"]
    assert ours["derived"]["decode_tps_vs_llamacpp"] == pytest.approx(
        ours["metrics"]["decode_tps"]["median"] / peer["metrics"]["decode_tps"]["median"])
    half = rows["tiny/llamacpp/float32+float16-weights/b1/p16/n32"]  # F16 GGUF, float32 arithmetic
    assert half["status"] == "ok" and half["derived"]["parity_relative"] < 5e-3
    assert peer["derived"]["parity_relative"] < 1e-3
    # llama.cpp's probes run through NumPy, not ggml: they measure the machine in float32 only, where NumPy's own
    # rows probe each dtype they compute in
    probes = {label: {p["dtype"] for p in by_key.values()} for label, by_key in doc["probes"].items()}
    assert [dtypes for label, dtypes in probes.items() if "llamacpp" in label] == [{"float32"}], probes
    assert [dtypes for label, dtypes in probes.items() if "numpy" in label] == [{"float32", "float16"}], probes


def qwen2_dir(tmp_path_factory):
    """A Qwen2 checkpoint HF wrote (grouped heads, q/k/v biases, tied embeddings), with a tokenizer.json."""
    import torch
    import transformers

    from arraygpt.engine.hf_tokenizer import write_preset_tokenizer
    torch.manual_seed(0)
    config = transformers.Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128,
                                      tie_word_embeddings=True, rope_theta=1e6)
    model = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.copy_(0.1 * torch.randn_like(param))
    directory = tmp_path_factory.mktemp("qwen2")
    model.save_pretrained(directory)
    write_preset_tokenizer(directory, 512)
    return directory


@pytest.fixture(scope="module", params=["tiny-llama", "qwen2"])
def llama_family(request, tmp_path_factory):
    from arraygpt.engine.source import resolve_model
    return str(resolve_model("tiny-llama").directory) if request.param == "tiny-llama" else str(qwen2_dir(tmp_path_factory))


@needs_llama
def test_llamacpp_runs_the_llama_family_with_hf_greedy_tokens(llama_family):
    """The llama architecture (q/k rows permuted to GGML's pairs, Llama 3's rope_freqs, an untied output) and
    qwen2 (HF's order, biases, tied): a batch's greedy tokens equal HF's own classes on the same checkpoint,
    and the logits the float64 reference to llama.cpp's float32 tolerance."""
    import torch
    from transformers import AutoModelForCausalLM

    from arraygpt.benchmarks.runners.llamacpp import LlamaCppRunner
    from arraygpt.benchmarks.measure.timing import fixed_prompts
    from arraygpt.engine import load_model
    vocab = load_model(llama_family, backend="numpy").config.vocab_size
    scenario = Scenario(group="t", model=llama_family, runner="llamacpp", device=None, dtype="float32", batch=3,
                        prompt_len=12, new_tokens=16)
    prompts = fixed_prompts(3, 12, vocab)
    hf = AutoModelForCausalLM.from_pretrained(llama_family, dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf.generate(torch.tensor(prompts), attention_mask=torch.ones(3, 12, dtype=torch.long), do_sample=False,
                           max_new_tokens=16, eos_token_id=None, pad_token_id=0)[:, 12:].tolist()
    runner = LlamaCppRunner()
    assert runner.generate_ids(scenario) == want
    prompt = fixed_prompts(1, 16, vocab, seed=1)
    expected = np.asarray(load_model(llama_family, backend="numpy", dtype="float64").logits(prompt))
    got = runner.parity_logits(llama_family, "float32", prompt)
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-3
