"""Backends x dtypes against the NumPy float64 reference, as `arraygpt parity` runs them."""

from __future__ import annotations


import numpy as np
import pytest

from arraygpt.benchmarks import parity
from arraygpt.backends import BackendUnavailable
from arraygpt.benchmarks.parity import TOLERANCE, parity_backend, run_parity
from arraygpt.engine import load_model

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


def test_parity_catches_a_cache_that_is_written_wrong(tmp_path, monkeypatch):
    """A planted bug: the decode writer stores each token's keys and values one slot too early. The
    logits (no cache) still match the reference; the cached-vs-uncached check must fail the cell.
    (On the 100-word test model and on random GPT-2 presets greedy decoding repeats one token, which
    hides cache bugs from any greedy check; this model's greedy tokens vary.)"""
    from arraygpt.engine import decoding
    from arraygpt.engine.kv_cache import write_kv

    from helpers import make_hf_model

    make_hf_model(vocab_size=2000, n_embd=128).save_pretrained(tmp_path, safe_serialization=True)

    def off_by_one(cache, new_kv, start):
        return write_kv(cache, new_kv, start - 1) if new_kv[0][0].shape[2] == 1 else write_kv(cache, new_kv, start)

    _, cells = run_parity(tmp_path, [("numpy", None)], ["float32"], new_tokens=16)
    assert cells[0].status == "pass"  # the model as it is
    monkeypatch.setattr(decoding, "write_kv", off_by_one)  # the decode strategy's writer
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
