"""Precision is explicit: float32 means IEEE float32 products on every backend and device; TF32 is an
opt-in that only NVIDIA GPUs honour, with its own parity tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from arraygpt.backends import BackendError
from arraygpt.benchmarks.parity import TOLERANCE
from arraygpt.engine import load_model
from arraygpt.engine.kv_cache import allocate_kv_cache
from arraygpt.engine.sampling import Sampling

from helpers import backend_or_skip, random_ids


def dot_precisions(lowered) -> set[str]:
    """The precision of every matrix product in a lowered (StableHLO) JAX function."""
    lines = [line for line in lowered.as_text().splitlines() if "stablehlo.dot_general" in line]
    assert lines, "no matrix product in the lowered function"
    return {line.split("precision = [", 1)[1].split("]", 1)[0] for line in lines}


@pytest.mark.parametrize("name", ["jax", "jax-loop"])
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_jax_float32_products_are_ieee_float32_on_every_device(small_checkpoint, name, device):
    """JAX's default float32 matmul is TF32-like on NVIDIA GPUs; arraygpt asks for HIGHEST everywhere, so
    this holds on the CPU too, where the two cannot be told apart numerically."""
    backend = backend_or_skip(name, device)
    assert backend.precision == "float32"
    model = load_model(small_checkpoint, backend=backend)
    xp = backend.xp
    ids = xp.asarray(random_ids(5, 100, seed=1, batch=1), dtype=xp.int32)
    pad, uniforms = xp.zeros((1,), dtype=xp.int32), xp.zeros((1,), dtype=xp.float32)
    cache = allocate_kv_cache(xp, model.config, 1, 12, model.dtype, backend.device)
    assert dot_precisions(model.prefill.lower(model.params, ids, pad, uniforms, sampling=Sampling())) == {"HIGHEST, HIGHEST"}
    if name == "jax-loop":  # the whole decode loop is the compiled function
        decode = model.decoding.loop.lower(model.params, ids[:, 0], 7, pad, cache, xp.zeros((4, 1), dtype=xp.float32), 4,
                                           n_slots=12, sampling=Sampling())
    else:
        decode = model.decoding.step.lower(model.params, ids[:, 0], 7, pad, cache, uniforms, n_slots=12,
                                           sampling=Sampling())
    assert dot_precisions(decode) == {"HIGHEST, HIGHEST"}
    assert dot_precisions(model._forward.lower(model.params, ids)) == {"HIGHEST, HIGHEST"}


@pytest.mark.parametrize("name, device", [("numpy", None), ("strict", None), ("jax", "cpu"), ("jax-loop", "cpu"),
                                          ("torch", "cpu")])
def test_tf32_is_refused_where_nothing_computes_it(name, device):
    backend_or_skip(name, device)  # the library is here
    with pytest.raises(BackendError, match="has no tf32 products .*NVIDIA GPUs") as err:
        backend_or_skip(name, device, precision="tf32")
    assert "\n" not in str(err.value)
    with pytest.raises(BackendError, match="unknown precision 'fp19'"):
        backend_or_skip(name, device, precision="fp19")


def test_tf32_on_the_command_line_on_a_cpu_backend_is_one_line(capsys):
    from arraygpt.cli import main
    assert main(["generate", "hi", "--model", "tiny", "--backend", "numpy", "--precision", "tf32"]) == 2
    err = capsys.readouterr().err
    assert "no tf32 products" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["jax", "torch", "cupy"])
def test_tf32_on_a_gpu_stays_within_its_tolerance(small_checkpoint, name):
    backend = backend_or_skip(name, None if name == "cupy" else "gpu", precision="tf32")
    ids = random_ids(10, 100, seed=4, batch=2)
    reference = np.asarray(load_model(small_checkpoint, backend="numpy", dtype="float64").logits(ids))
    model = load_model(small_checkpoint, backend=backend)
    got = np.asarray(backend.to_host(model.logits(ids)), dtype=np.float64)
    assert np.abs(got - reference).max() / np.abs(reference).max() <= TOLERANCE["float32+tf32"]
    if name == "jax":
        assert dot_precisions(model._forward.lower(model.params, backend.xp.asarray(ids))) == {"HIGH, HIGH"}
