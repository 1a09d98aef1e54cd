"""Backends x dtypes against the NumPy float64 reference, as `arraygpt parity` runs them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmarks import parity
from backends import BackendUnavailable
from benchmarks.parity import TOLERANCE, parity_backend, run_parity
from engine import load_model

from helpers import BACKEND_CASES, backend_or_skip, random_ids

DTYPES = ["float32", "float16", "bfloat16"]
# jax-loop computes logits exactly as jax does (only generation differs), so parity skips it.
PARITY_CASES = [case for case in BACKEND_CASES if case[0] != "jax-loop"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, device", PARITY_CASES, ids=[f"{b}-{d or 'default'}" for b, d in PARITY_CASES])
def test_backend_dtype_matches_float64_reference(small_checkpoint, name, device, dtype):
    """The scikit-learn pattern: namespace x device x dtype, each against the float64 reference."""
    try:
        backend = parity_backend(name, device)  # JAX at full float32 matmul precision, as parity runs it
    except BackendUnavailable as err:
        pytest.skip(f"{name} on {device or 'default device'} is not usable here: {err.reason}")
    try:
        backend.dtype(dtype)
    except Exception as err:
        pytest.skip(f"{name} has no {dtype}: {err}")
    ids = random_ids(10, 100, seed=4, batch=2)
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    got = np.asarray(backend.to_host(load_model(small_checkpoint, backend=backend, dtype=dtype).logits(ids)),
                     dtype=np.float64)
    relative = np.abs(got - reference).max() / np.abs(reference).max()
    assert relative <= TOLERANCE[dtype], f"{name} {dtype}: {relative:.2e}"


def test_parity_matrix_passes_for_the_ci_backends(small_checkpoint):
    backends = [("numpy", None), ("strict", None), ("strict", "device1"), ("jax", "cpu"), ("torch", "cpu"), ("cupy", None)]
    setup, cells = run_parity(small_checkpoint, backends, ["float32", "float16", "bfloat16"], new_tokens=8)
    assert all(c.status in ("pass", "skipped") for c in cells), [c for c in cells if c.status == "fail"]
    for c in cells:
        if c.status == "skipped":
            assert c.reason  # every skip says why
    ran = {(c.backend, c.dtype) for c in cells if c.status == "pass"}
    assert {("numpy", "float32"), ("strict", "float32"), ("numpy", "float16")} <= ran
    numpy_bf16 = next(c for c in cells if (c.backend, c.dtype) == ("numpy", "bfloat16"))
    assert numpy_bf16.status == "skipped" and "no bfloat16" in numpy_bf16.reason
    assert setup["reference"] == "numpy float64"


def test_parity_fails_a_cell_outside_tolerance(small_checkpoint, monkeypatch):
    """The gate can fail: float16 against a float32-sized tolerance is flagged, with the reason."""
    monkeypatch.setitem(parity.TOLERANCE, "float16", 1e-7)
    _, cells = run_parity(small_checkpoint, [("numpy", None)], ["float16"], new_tokens=4)
    assert cells[0].status == "fail" and "logits off by" in cells[0].reason


def test_parity_cli_exit_codes(small_checkpoint, tmp_path, monkeypatch, capsys):
    import json

    from arraygpt.cli import main

    out = tmp_path / "parity.json"
    assert main(["parity", "--model", str(small_checkpoint), "--backends", "numpy,strict", "--json", str(out)]) == 0
    cells = json.loads(out.read_text())["cells"]
    assert [c["status"] for c in cells] == ["pass", "pass"]
    monkeypatch.setitem(parity.TOLERANCE, "float32", 1e-9)
    assert main(["parity", "--model", str(small_checkpoint), "--backends", "numpy"]) == 1


def test_jax_decode_compiles_once_per_batch_and_cache_length(small_checkpoint):
    jax_backend = backend_or_skip("jax", "cpu")
    model = load_model(small_checkpoint, backend=jax_backend)
    prompts = [random_ids(5, 100, seed=1), random_ids(3, 100, seed=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "donated buffers were not usable"
        model.generate(prompts, max_new_tokens=20)
    decoding = model.decoding
    assert decoding.step._cache_size() == 1  # 19 decode steps, one trace
    assert decoding.write._cache_size() == 1  # 19 cache writes at a traced slot, one trace
    assert model.prefill._cache_size() == model.write_prefix._cache_size() == 1
    model.generate(prompts, max_new_tokens=20, temperature=0.0)
    assert decoding.step._cache_size() == decoding.write._cache_size() == 1
    model.generate([random_ids(7, 100, seed=3)], max_new_tokens=10)  # new batch size and cache length
    assert decoding.step._cache_size() == 2


def test_jax_decode_step_does_not_copy_the_cache(small_checkpoint):
    """A step that read and updated a donated cache made XLA copy each buffer twice per token."""
    from engine.kv_cache import allocate_kv_cache
    from engine.sampling import Sampling

    jax_backend = backend_or_skip("jax", "cpu")
    model = load_model(small_checkpoint, backend=jax_backend)
    xp = jax_backend.xp
    cache = allocate_kv_cache(xp, model.config, 1, 40, model.dtype, jax_backend.device)
    token, pad = xp.zeros((1,), dtype=xp.int32), xp.zeros((1,), dtype=xp.int32)
    uniforms = xp.zeros((1,), dtype=xp.float32)
    decoding = model.decoding
    step = decoding.step.lower(model.params, token, 7, pad, cache, uniforms, n_slots=40, sampling=Sampling())
    _, new_kv = decoding.step(model.params, token, 7, pad, cache, uniforms, n_slots=40, sampling=Sampling())
    write = decoding.write.lower(cache, new_kv, 7)
    for compiled in (step.compile().as_text(), write.compile().as_text()):
        assert not [line for line in compiled.splitlines() if " copy(" in line and "[1,4,40,16]" in line]


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_jax_loop_compiles_once_and_updates_the_cache_in_place(small_checkpoint, device):
    """The whole decode loop is one jitted call, traced once per batch and length, with no cache copies."""
    from engine.kv_cache import allocate_kv_cache
    from engine.sampling import Sampling

    backend = backend_or_skip("jax-loop", device)
    model = load_model(small_checkpoint, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "donated buffers were not usable"
        first = model.generate([random_ids(5, 100, seed=1), random_ids(3, 100, seed=2)], max_new_tokens=20)
        second = model.generate([random_ids(5, 100, seed=3), random_ids(4, 100, seed=4)], max_new_tokens=20)
    assert first != second
    assert type(model.decoding).__name__ == "CompiledLoop" and model.decoding.loop._cache_size() == 1
    xp = backend.xp
    cache = allocate_kv_cache(xp, model.config, 1, 40, model.dtype, backend.device)
    token, pad = xp.zeros((1,), dtype=xp.int32), xp.zeros((1,), dtype=xp.int32)
    loop = model.decoding.loop.lower(model.params, token, 7, pad, cache, xp.zeros((32, 1), dtype=xp.float32),
                                   n_slots=40, sampling=Sampling())
    copies = [line for line in loop.compile().as_text().splitlines() if " copy(" in line and "[1,4,40,16]" in line]
    assert not copies


def test_parity_catches_a_cache_that_is_written_wrong(tmp_path, monkeypatch):
    """A planted bug: the decode writer stores each token's keys and values one slot too early. The
    logits (no cache) still match the reference; the cached-vs-uncached check must fail the cell.
    (On the 100-word test model and on random GPT-2 presets greedy decoding repeats one token, which
    hides cache bugs from any greedy check; this model's greedy tokens vary.)"""
    import engine.decoding
    from engine.kv_cache import write_kv

    from helpers import make_hf_model

    make_hf_model(vocab_size=2000, n_embd=128).save_pretrained(tmp_path, safe_serialization=True)

    def off_by_one(cache, new_kv, start):
        return write_kv(cache, new_kv, start - 1) if new_kv[0][0].shape[2] == 1 else write_kv(cache, new_kv, start)

    _, cells = run_parity(tmp_path, [("numpy", None)], ["float32"], new_tokens=16)
    assert cells[0].status == "pass"  # the model as it is
    monkeypatch.setattr(engine.decoding, "write_kv", off_by_one)  # the decode strategy's writer
    _, cells = run_parity(tmp_path, [("numpy", None), ("jax", "cpu")], ["float32"], new_tokens=16)
    ran = [c for c in cells if c.status != "skipped"]
    assert ran and all(c.status == "fail" and "cached decode differs from full recomputation" in c.reason
                       for c in ran), cells
    assert all(c.relative < 1e-5 for c in ran)  # the uncached logits are right: only the cache is wrong


def test_parity_compiles_the_uncached_check_once_per_cell(small_checkpoint, caplog):
    """JAX's own log of its compilations: the uncached forward compiles once per cell, however many
    tokens are checked (recomputing step by step compiled a new shape per token)."""
    import logging

    jax = pytest.importorskip("jax")
    backend_or_skip("jax", "cpu")
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        _, cells = run_parity(small_checkpoint, [("jax", "cpu"), ("jax-loop", "cpu")], ["float32"], new_tokens=12)
    assert [c.status for c in cells] == ["pass", "pass"]
    forwards = [r for r in caplog.records if "Compiling jit(full_forward)" in r.getMessage()]
    assert len(forwards) == 2  # one per cell
