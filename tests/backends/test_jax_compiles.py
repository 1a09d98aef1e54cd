"""The JAX adapters compile each step once per shape and update the donated KV cache in place."""

from __future__ import annotations

import warnings

import pytest

from arraygpt.engine import load_model

from helpers import backend_or_skip, random_ids


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
    from arraygpt.engine.kv_cache import allocate_kv_cache
    from arraygpt.engine.sampling import Sampling

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
    from arraygpt.engine.kv_cache import allocate_kv_cache
    from arraygpt.engine.sampling import Sampling

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
    loop = model.decoding.loop.lower(model.params, token, 7, pad, cache, xp.zeros((32, 1), dtype=xp.float32), 30,
                                     n_slots=40, sampling=Sampling())
    copies = [line for line in loop.compile().as_text().splitlines() if " copy(" in line and "[1,4,40,16]" in line]
    assert not copies


@pytest.mark.parametrize("runner", ["jax", "jax-loop"])
def test_a_call_inside_the_same_buckets_compiles_nothing(small_checkpoint, runner, caplog):
    """Another prompt length and another new-token count in the same shape buckets (engine/buckets.py):
    no line in JAX's compile log; a prompt in the next bucket compiles again. The tokens are the eager
    backend's, which runs every call at its exact shape."""
    import logging

    import jax

    model = load_model(small_checkpoint, backend=backend_or_skip(runner, "cpu"))
    eager = load_model(small_checkpoint, backend="numpy")
    sampled = dict(temperature=0.8, top_k=30, seed=3)  # a sampling mode is static: compiled once each
    for kwargs in ({}, sampled):
        first = random_ids(5, 100, seed=1)
        assert model.generate(first, max_new_tokens=20, **kwargs) == eager.generate(first, max_new_tokens=20, **kwargs)
    caplog.set_level(logging.WARNING, logger="jax")

    def compiled() -> list[str]:
        return [r.getMessage()[:80] for r in caplog.records if r.getMessage().startswith("Compiling ")]

    with jax.log_compiles():
        prompt = random_ids(7, 100, seed=2)  # 5 and 7 are in bucket 8; 19 and 17 decode steps in bucket 32
        for kwargs in ({}, sampled):
            assert model.generate(prompt, max_new_tokens=18, **kwargs) == eager.generate(prompt, max_new_tokens=18,
                                                                                         **kwargs)
        assert compiled() == []
        caplog.clear()
        model.generate(random_ids(12, 100, seed=4), max_new_tokens=18)  # prompt bucket 16: a new prefill
        assert compiled()
