"""The KV cache's writers and the sampling functions, against NumPy formulas written here."""

from __future__ import annotations

import numpy as np

from arraygpt.engine import kv_cache, sampling
from arraygpt.engine.config import GPTConfig

RNG = np.random.default_rng(1)


def test_cache_writes_land_in_their_slots(xp):
    config = GPTConfig(n_layer=2, n_head=2, n_embd=8)
    cache = kv_cache.allocate_kv_cache(xp, config, batch=2, n_slots=6, dtype=xp.float32, device=None)
    assert len(cache) == 2 and cache[0][0].shape == (2, 2, 6, 4)
    prefix = [(xp.asarray(RNG.normal(size=(2, 2, 3, 4)).astype(np.float32)),) * 2 for _ in range(2)]
    cache = kv_cache.write_kv(cache, prefix, 0)
    one = [(xp.asarray(RNG.normal(size=(2, 2, 1, 4)).astype(np.float32)),) * 2 for _ in range(2)]
    stepped = kv_cache.write_kv(cache, one, 4)
    selected = kv_cache.select_kv(cache, one, xp.asarray(4, dtype=xp.int32))
    for layer in range(2):
        want = np.zeros((2, 2, 6, 4), dtype=np.float32)
        want[:, :, :3] = np.asarray(prefix[layer][0])
        want[:, :, 4] = np.asarray(one[layer][0])[:, :, 0]
        np.testing.assert_array_equal(np.asarray(stepped[layer][0]), want)
        np.testing.assert_array_equal(np.asarray(selected[layer][1]), want)  # the select: the same cache


def test_top_k_keeps_the_k_largest(xp):
    logits = np.asarray([[1.0, 5.0, 3.0, 4.0, 2.0]], dtype=np.float32)
    kept = np.asarray(sampling.keep_top_k(xp.asarray(logits), 2))
    np.testing.assert_array_equal(kept, [[-np.inf, 5.0, -np.inf, 4.0, -np.inf]])


def test_top_p_keeps_the_smallest_set_holding_p(xp):
    probs = np.asarray([[0.1, 0.5, 0.15, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(sampling.keep_top_p(xp.asarray(probs), 0.7)), [[0, 0.5, 0, 0.25]])
    np.testing.assert_allclose(np.asarray(sampling.keep_top_p(xp.asarray(probs), 0.3)), [[0, 0.5, 0, 0]])


def test_draw_inverts_the_cumulative_distribution(xp):
    probs = np.asarray([[0.2, 0.3, 0.5]] * 4, dtype=np.float32)
    uniforms = np.asarray([0.0, 0.19, 0.21, 0.999], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(sampling.draw(xp.asarray(probs), xp.asarray(uniforms))), [0, 0, 1, 2])


def test_tempered_logits_keep_each_rows_max_at_zero(xp):
    logits = RNG.normal(size=(3, 50)).astype(np.float32) * 10
    for temperature in (1e-40, 0.7, 1e6):
        got = np.asarray(sampling.tempered(xp.asarray(logits), temperature), dtype=np.float64)
        assert np.all(got.max(-1) == 0) and np.all(np.isfinite(got.max(-1)))
        if temperature == 0.7:
            want = (logits.astype(np.float64) - logits.max(-1, keepdims=True)) / 0.7
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sample_marks_rows_that_are_not_finite(xp):
    logits = RNG.normal(size=(3, 8)).astype(np.float32)
    logits[1, 2] = np.nan
    logits[2, 5] = np.inf
    for setting in (sampling.Sampling(), sampling.Sampling(temperature=0.8, top_k=3)):
        ids = np.asarray(sampling.sample(xp.asarray(logits), xp.asarray(np.full(3, 0.5, dtype=np.float32)), setting))
        assert ids[1] == ids[2] == sampling.NON_FINITE and 0 <= ids[0] < 8
