"""What the bench records per row: mixed-precision floors and rows, mesh rows."""

from __future__ import annotations

import json

import pytest

from arraygpt.engine import load_model

from helpers import backend_or_skip


def test_mixed_floor_counts_the_stored_bytes():
    """The decode floor reads the matrices at 2 bytes and the rest at 4; counted from HF's own model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from arraygpt.benchmarks.judge.roofline import decode_bytes_per_step
    from arraygpt.engine.config import PRESETS

    with torch.device("meta"):
        hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=4, n_embd=128))
    matrices = sum(p.numel() for n, p in hf.transformer.named_parameters() if p.dim() == 2 and "wpe" not in n)
    rest = sum(p.numel() for n, p in hf.transformer.named_parameters() if p.dim() == 1)
    one_position = hf.config.n_embd  # only the new token's row of wpe is read
    config = PRESETS["tiny"]
    assert decode_bytes_per_step(config, "float32", 1, 0) == 4 * (matrices + rest + one_position)
    assert decode_bytes_per_step(config, "float32", 1, 0, "bfloat16") == 2 * matrices + 4 * (rest + one_position)
    # llama.cpp's Q8_0: a block of 32 weights is 32 int8 and one float16 scale
    assert decode_bytes_per_step(config, "float32", 1, 0, "q8_0") == 34 / 32 * matrices + 4 * (rest + one_position)


@pytest.mark.parametrize("preset", ["tiny-llama", "smollm2-135m"])  # untied (its table read a row a step), tied
def test_a_llama_family_decode_step_reads_what_hfs_model_holds(preset):
    """The bytes a step reads, counted from HF's own model of the preset (meta device): every 2-D weight the
    products read (lm_head, or the tied embedding), the 1-D norms, one embedding row if untied, and a cache of
    the key/value heads only."""
    import torch
    import transformers

    from arraygpt.benchmarks.judge.roofline import decode_bytes_per_step
    from arraygpt.engine.llama.config import LLAMA_PRESETS
    config = LLAMA_PRESETS[preset]
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config.to_hf_json()))
    params = dict(hf.named_parameters())
    table = params["model.embed_tokens.weight"]
    matrices = sum(p.numel() for n, p in params.items() if p.dim() == 2 and (config.tie_word_embeddings or p is not table))
    rest = sum(p.numel() for p in params.values() if p.dim() == 1)
    one_row = 0 if config.tie_word_embeddings else config.n_embd
    cache_per_slot = 2 * config.n_layer * hf.config.num_key_value_heads * hf.config.head_dim
    assert decode_bytes_per_step(config, "float32", 1, 0) == 4 * (matrices + rest + one_row)
    assert decode_bytes_per_step(config, "float32", 2, 10) == 4 * (matrices + rest + one_row + 2 * 10 * cache_per_slot)
    assert decode_bytes_per_step(config, "float32", 1, 0, "bfloat16") == 2 * matrices + 4 * (rest + one_row)


def test_a_mixed_row_and_a_float32_row_stay_apart(tmp_path):
    from arraygpt.cli import main
    backend_or_skip("torch")
    path = tmp_path / "mixed.json"
    assert main(["bench", "--models", "tiny", "--batch-sizes", "1", "--prompt-lens", "8", "--new-tokens", "8",
                 "--repeats", "2", "--backends", "torch", "--weights", "float32,bfloat16", "--peer", "hf",
                 "--no-parity", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    rows = {(r["runner"], r["weights"]): r for r in doc["results"]}
    assert set(rows) == {("torch", None), ("torch", "bfloat16"), ("hf", None)}  # HF has no mixed mode
    full, mixed = rows[("torch", None)], rows[("torch", "bfloat16")]
    assert full["id"] == "tiny/torch/float32/b1/p8/n8" and mixed["id"] == "tiny/torch/float32+bfloat16-weights/b1/p8/n8"
    assert mixed["derived"]["decode_floor_tps"] > 1.5 * full["derived"]["decode_floor_tps"]
    assert "decode_tps_vs_hf" in mixed["derived"]  # against HF float32, the same arithmetic around the products
    assert set(doc["ceilings"]["cpu"]["matmul"]) == {"float32", "bfloat16"}


def test_bench_rows_carry_the_mesh_per_device_memory_and_all_reduce_bytes(tmp_path):
    from arraygpt.cli import main
    path = tmp_path / "mesh.json"
    assert main(["bench", "--models", "tiny", "--batch-sizes", "2", "--prompt-lens", "8", "--new-tokens", "8",
                 "--repeats", "1", "--backends", "jax:cpu", "--mesh", "none;tp=4;dp=2,tp=2", "--peer", "none",
                 "--no-roofline", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    rows = {r["mesh"]: r for r in doc["results"]}
    assert set(rows) == {None, "tp=4", "dp=2,tp=2"} and all(r["status"] == "ok" for r in rows.values())
    assert rows["tp=4"]["id"] == "tiny/jax:cpu[tp=4]/float32/b2/p8/n8"
    quarter = rows["tp=4"]["metrics"]["per_device"]["weights"]  # read from the shards on the first device
    assert 0.9 < 4 * quarter / (load_model("tiny").config.n_params * 4) < 1.1  # (wpe, norms, biases are whole)
    # (2 n_layer + 1) all-reduces of [B/dp, C] float32 activations: 5 x 2 x 128 x 4 bytes at tp=4
    assert rows["tp=4"]["derived"]["allreduce_bytes_per_step"] == 5 * 2 * 128 * 4
    assert rows["dp=2,tp=2"]["derived"]["allreduce_bytes_per_step"] == 5 * 1 * 128 * 4
    assert rows["dp=2,tp=2"]["metrics"]["per_device"]["kv_cache"] * 4 == pytest.approx(
        2 * 2 * 2 * 4 * 16 * 32 * 4)  # 2 layers x (k, v) x [B=2, H=4, 16 slots, D=32] float32, over 4 devices
    # (8 + 7 = 15 slots needed: the cache is the bucket of 15, engine/buckets.py)
    assert all(r["derived"]["parity_relative"] < 1e-5 for r in rows.values())


def test_every_worker_measures_the_float32_bandwidth_whatever_its_rows(tmp_path):
    """A half-precision-only run: its probes still include float32, so the machine's bandwidth ceiling is
    the fastest streaming read, and a slow half-precision kernel shows as a low % of it."""
    from arraygpt.cli import main
    path = tmp_path / "half.json"
    assert main(["bench", "--models", "tiny", "--backends", "numpy", "--dtypes", "float16", "--peer", "none",
                 "--no-parity", "--batch-sizes", "1", "--prompt-lens", "4", "--new-tokens", "4", "--repeats", "1",
                 "--warmup", "0", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert set(doc["probes"]["numpy"]) == {"float32", "float16"}
    bandwidth = doc["ceilings"]["cpu"]["bandwidth"]
    assert bandwidth["set_by"] == "numpy float32"
    assert bandwidth["value"] >= doc["probes"]["numpy"]["float16"]["bandwidth_bytes_s"]


def test_a_roofline_over_100_percent_is_never_printed_bare():
    from arraygpt.benchmarks.present.report import _percent
    from arraygpt.benchmarks.present.tables import roofline_cell
    assert roofline_cell(0.56) == "56%" and roofline_cell(1.11) == "[red]!111%[/]"
    assert _percent(0.56) == "56%" and _percent(1.26) == "**!126%**"
