"""The forward passes' functions one by one (engine/layers.py, engine/attention.py, engine/gpt2.py,
engine/llama/forward.py), against formulas written here in NumPy float64, on NumPy float32 and array-api-strict
inputs: a failure names the function, not just a logit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from arraygpt.engine import attention, families, gpt2, layers
from arraygpt.engine.llama import forward as llama

RNG = np.random.default_rng(0)


def arr(xp, value, dtype="float32"):
    return xp.asarray(np.asarray(value, dtype=dtype))


def close(got, want, tol=2e-6):
    got = np.asarray(got, dtype=np.float64)
    np.testing.assert_allclose(got, want, atol=tol * max(1.0, np.abs(want).max()), rtol=0)


def test_gelu_is_gpt2s_tanh_form(xp):
    x = RNG.normal(size=(3, 7)) * 3
    want = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    close(layers.gelu(arr(xp, x)), want)


def test_softmax_rows_sum_to_one_and_survive_large_values(xp):
    x = RNG.normal(size=(4, 9)) * 30 + 500  # exp(500) overflows float32: the max must be taken away
    x = x.astype(np.float32).astype(np.float64)  # the reference reads the float32 inputs (ulp 3e-5 at 500)
    e = np.exp(x - x.max(-1, keepdims=True))
    close(layers.softmax(arr(xp, x)), e / e.sum(-1, keepdims=True))


def test_layer_norm_uses_the_biased_variance(xp):
    x, g, b = RNG.normal(size=(2, 5, 8)), RNG.normal(size=8), RNG.normal(size=8)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)  # ddof=0, as torch.nn.LayerNorm
    close(layers.layer_norm(arr(xp, x), arr(xp, g), arr(xp, b), 1e-5), g * (x - mean) / np.sqrt(var + 1e-5) + b, 1e-5)


def test_linear_takes_nn_linear_layout(xp):
    x, w, b = RNG.normal(size=(2, 3, 6)), RNG.normal(size=(4, 6)), RNG.normal(size=4)  # w: [n_out, n_in]
    close(layers.linear(arr(xp, x), arr(xp, w), arr(xp, b)), x @ w.T + b, 1e-5)


def test_split_qkv_reads_head_major_features(xp):
    B, T, H, D = 2, 3, 4, 5
    qkv = RNG.normal(size=(B, T, 3 * H * D)).astype(np.float32)  # a permutation: exact in float32
    q, k, v = gpt2.split_qkv(arr(xp, qkv), D)
    heads = qkv.reshape(B, T, H, 3, D)  # (head, q|k|v, D): engine/layout.py's order
    for got, i in ((q, 0), (k, 1), (v, 2)):
        close(got, heads[:, :, :, i, :].transpose(0, 2, 1, 3), 0)
    close(attention.merge_heads(q), heads[:, :, :, 0, :].reshape(B, T, H * D), 0)


def reference_attention(q, k, v, mask, scale):
    scores = np.where(mask, (q @ k.swapaxes(-1, -2)) * scale, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ v


def test_attention_is_masked_scaled_softmax(xp):
    B, H, T, D = 2, 3, 5, 4
    q, k, v = (RNG.normal(size=(B, H, T, D)) for _ in range(3))
    mask = np.tril(np.ones((T, T), dtype=bool))[None, None].repeat(B, 0)
    for scale in (1 / math.sqrt(D), 1.0, 0.25 / math.sqrt(D)):  # GPT-2, scale_attn_weights off, by layer index
        close(attention.attention(arr(xp, q), arr(xp, k), arr(xp, v), xp.asarray(mask), scale),
              reference_attention(q, k, v, mask, scale), 1e-5)


def test_attention_with_cache_equals_attention_over_the_whole_sequence(xp):
    B, H, S, T, D = 1, 2, 6, 3, 4
    q, k, v = (RNG.normal(size=(B, H, S + T, D)) for _ in range(3))
    full = reference_attention(q, k, v, np.tril(np.ones((S + T, S + T), dtype=bool))[None, None], 0.5)
    cache_mask = np.ones((B, 1, T, S), dtype=bool)  # every cached slot is earlier than every new token
    got = attention.attention_with_cache(arr(xp, q[:, :, S:]), arr(xp, k[:, :, S:]), arr(xp, v[:, :, S:]),
                                    arr(xp, k[:, :, :S]), arr(xp, v[:, :, :S]), xp.asarray(cache_mask), 0.5)
    close(got, full[:, :, S:], 1e-5)


def grouped_reference(q, k, v, mask, scale):  # HF's repeat_kv: kv head j serves query heads j*G .. j*G+G-1
    groups = q.shape[1] // k.shape[1]
    return reference_attention(q, np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1), mask, scale)


def test_grouped_query_attention_equals_repeated_key_value_heads(xp):
    B, Hq, Hkv, T, D = 2, 6, 2, 5, 4
    q = RNG.normal(size=(B, Hq, T, D))
    k, v = (RNG.normal(size=(B, Hkv, T, D)) for _ in range(2))
    mask = np.tril(np.ones((T, T), dtype=bool))[None, None].repeat(B, 0)
    mask[1, 0, :, 0] = False  # a pad key in row 1 (its first query still sees itself)
    mask[1, 0, 0, 0] = True
    close(attention.attention(arr(xp, q), arr(xp, k), arr(xp, v), xp.asarray(mask), 0.5),
          grouped_reference(q, k, v, mask, 0.5), 1e-5)


def test_grouped_attention_with_cache_equals_attention_over_the_whole_sequence(xp):
    B, Hq, Hkv, S, T, D = 2, 8, 2, 6, 3, 4
    q = RNG.normal(size=(B, Hq, S + T, D))
    k, v = (RNG.normal(size=(B, Hkv, S + T, D)) for _ in range(2))
    full = grouped_reference(q, k, v, np.tril(np.ones((S + T, S + T), dtype=bool))[None, None], 0.5)
    got = attention.attention_with_cache(arr(xp, q[:, :, S:]), arr(xp, k[:, :, S:]), arr(xp, v[:, :, S:]),
                                         arr(xp, k[:, :, :S]), arr(xp, v[:, :, :S]),
                                         xp.asarray(np.ones((B, 1, T, S), dtype=bool)), 0.5)
    close(got, full[:, :, S:], 1e-5)


def test_rms_norm_silu_and_rotary_embeddings(xp):
    x, g = RNG.normal(size=(2, 3, 8)), RNG.normal(size=8)
    close(layers.rms_norm(arr(xp, x), arr(xp, g), 1e-6), g * x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6), 1e-5)
    close(layers.silu(arr(xp, x)), x / (1 + np.exp(-x)), 1e-5)
    # rotary: each pair (i, i + D/2) rotated by position * inv_freq[i] (HF's rotate_half convention)
    B, H, T, D = 1, 2, 5, 8
    inv_freq = 1.0 / 10000 ** (np.arange(0, D, 2) / D)
    positions = np.asarray([[0, 1, 2, 7, 30]])
    q = RNG.normal(size=(B, H, T, D))
    cos, sin = llama.rotary_tables(xp.asarray(positions.astype(np.int32)), arr(xp, inv_freq), arr(xp, q).dtype)
    got = np.asarray(llama.rotate(arr(xp, q), cos, sin), dtype=np.float64)
    angle = positions[0][:, None] * inv_freq[None, :]  # [T, D/2]
    first, second = q[..., :D // 2], q[..., D // 2:]
    want = np.concatenate([first * np.cos(angle) - second * np.sin(angle),
                           second * np.cos(angle) + first * np.sin(angle)], axis=-1)
    close(got, want, 1e-5)


def test_llama3_rope_scaling_keeps_high_frequencies_and_stretches_low_ones():
    """Llama 3's three bands (HF's _compute_llama3_parameters), read off the config's inv_freq."""
    from arraygpt.engine.llama.config import LlamaConfig, RopeScaling
    base = dict(n_layer=1, n_head=2, n_kv_head=1, n_embd=64, intermediate_size=8, vocab_size=8, rope_theta=500000.0)
    plain = LlamaConfig(**base).inv_freq
    scaled = LlamaConfig(**base, rope_scaling=RopeScaling(8.0, 1.0, 4.0, 64)).inv_freq
    wavelengths = 2 * math.pi / np.asarray(plain)
    high, low = wavelengths < 64 / 4, wavelengths > 64 / 1
    assert high.any() and low.any() and (~high & ~low).any()  # the test reaches all three bands
    np.testing.assert_allclose(np.asarray(scaled)[high], np.asarray(plain)[high])
    np.testing.assert_allclose(np.asarray(scaled)[low], np.asarray(plain)[low] / 8.0)
    middle = ~high & ~low
    assert np.all(np.asarray(scaled)[middle] < np.asarray(plain)[middle])
    assert np.all(np.asarray(scaled)[middle] > np.asarray(plain)[middle] / 8.0)


def test_masks_and_positions_of_a_left_padded_batch(xp):
    slots = xp.asarray(np.arange(4, dtype=np.int32))
    pad = xp.asarray(np.asarray([0, 2], dtype=np.int32))
    mask = np.asarray(attention.attention_mask(slots, 4, pad))
    assert mask.shape == (2, 1, 4, 4)
    np.testing.assert_array_equal(mask[0, 0], np.tril(np.ones((4, 4), dtype=bool)))
    # row 1: slots 0, 1 are padding; each pad query sees only itself; real queries never see pad keys
    np.testing.assert_array_equal(mask[1, 0], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(np.asarray(attention.position_ids(slots, pad)), [[0, 1, 2, 3], [0, 0, 0, 1]])
    new = xp.asarray(np.asarray([4], dtype=np.int32))
    np.testing.assert_array_equal(np.asarray(attention.cache_mask(new, 6, pad))[:, 0, 0], [[1, 1, 1, 1, 0, 0],
                                                                                     [0, 0, 1, 1, 0, 0]])


def test_embedding_and_logits(xp):
    wte, wpe = RNG.normal(size=(11, 4)), RNG.normal(size=(7, 4))
    ids, positions = np.asarray([[3, 10, 0]]), np.asarray([[0, 1, 2]])
    close(gpt2.embed(xp.asarray(ids.astype(np.int32)), xp.asarray(positions.astype(np.int32)), arr(xp, wte),
                     arr(xp, wpe)), wte[ids] + wpe[positions])
    x = RNG.normal(size=(1, 2, 4))
    padded = np.concatenate([wte, np.zeros((5, 4))])  # a table padded to whole shards: cut back to 11
    close(layers.lm_logits(arr(xp, x), arr(xp, padded), 11), x @ wte.T, 1e-5)


def test_attention_scales_follow_the_config():
    from arraygpt.engine.config import GPTConfig
    base = GPTConfig(n_layer=3, n_head=2, n_embd=8)
    assert families.Hyper.of(base).attn_scales == (0.5, 0.5, 0.5)  # 1/sqrt(head_dim 4)
    by_layer = GPTConfig(n_layer=3, n_head=2, n_embd=8, scale_attn_by_inverse_layer_idx=True)
    assert families.Hyper.of(by_layer).attn_scales == (0.5, 0.25, 0.5 / 3)
    assert GPTConfig(n_layer=2, n_head=2, n_embd=8, scale_attn_weights=False).attn_scales == (1.0, 1.0)


def test_every_weight_product_goes_through_the_backends_product(small_checkpoint):
    """Primitives.product is the one place an adapter chooses how x @ w.T is computed: a forward pass calls it
    for each layer's four matrices and the logits, in that order, and nothing else."""
    from arraygpt.engine import load_model
    model = load_model(small_checkpoint, dtype="float32")
    seen = []

    def product(x, w):
        seen.append(tuple(w.shape))
        return layers.times_transposed(x, w)
    n_layer, C = model.config.n_layer, model.config.n_embd
    hp = dataclasses.replace(families.Hyper.of(model.config), prims=layers.Primitives(product=product))
    ids = np.asarray([[1, 5, 9]], dtype=np.int32)
    positions, mask = np.asarray([[0, 1, 2]], dtype=np.int32), np.tril(np.ones((3, 3), dtype=bool))[None, None]
    logits, _ = gpt2.gpt2(model.params, ids, positions, mask, hp)
    assert seen == [(3 * C, C), (C, C), (4 * C, C), (C, 4 * C)] * n_layer + [(model.config.vocab_size, C)]
    default, _ = gpt2.gpt2(model.params, ids, positions, mask, families.Hyper.of(model.config))
    np.testing.assert_array_equal(logits, default)
    assert families.Hyper.of(model.config).prims.product is layers.times_transposed
