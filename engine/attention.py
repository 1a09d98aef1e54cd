"""Causal self-attention with a KV cache, shared by both model families, and the masks and positions of
left-padded batches.

Shapes: B batch, Hq query heads, Hkv key/value heads (grouped-query attention: each key/value head serves
G = Hq / Hkv consecutive query heads, as HF's repeat_kv pairs them; GPT-2 has G = 1), T new tokens, S cached
slots, D head size. Grouped queries are folded into the token axis ([B, Hkv, G*T, D], rows ordered
(group, token)), so the cache is read once per key/value head, never copied G times.
"""

from __future__ import annotations

import math

from array_api_compat import device as device_of

from .layers import ENGINE
from .namespace import array_namespace


def merge_heads(x):  # [B, H, T, D] -> [B, T, H*D]
    xp = array_namespace(x)
    B, H, T, D = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (B, T, H * D))


def fold_groups(q, n_kv):  # [B, Hq, T, D] -> [B, Hkv, G*T, D]: each key/value head's queries as rows
    xp = array_namespace(q)
    B, Hq, T, D = q.shape
    return q if Hq == n_kv else xp.reshape(q, (B, n_kv, Hq // n_kv * T, D))


def unfold_groups(out, n_q, T):  # [B, Hkv, G*T, D] -> [B, Hq, T, D]
    xp = array_namespace(out)
    B, Hkv, _, D = out.shape
    return out if Hkv == n_q else xp.reshape(out, (B, n_q, T, D))


def repeat_rows(mask, groups):  # [B, 1, T, S] -> [B, 1, G*T, S]: the mask of every folded query row
    return mask if groups == 1 else array_namespace(mask).tile(mask, (1, 1, groups, 1))


def causal(scores, T, groups):  # [B, H, G*T, T] scores of new tokens for each other -> causally masked
    xp = array_namespace(scores)
    new = xp.arange(T, dtype=xp.int32, device=device_of(scores))
    rows = new if groups == 1 else xp.tile(new, (groups,))  # folded row g*T + t is token t
    return xp.where(rows[:, None] >= new[None, :], scores, -math.inf)


def attention(q, k, v, mask, scale, prims=ENGINE):
    # [B, Hq, T, D], [B, Hkv, T, D], [B, Hkv, T, D], [B, 1, T, T] -> [B, Hq, T, D]
    if prims.attention is not None:  # the library's fused kernel: no [B, H, T, T] scores in memory
        return prims.attention(q, k, v, mask, scale)
    xp = array_namespace(q)
    Hq, T, groups = q.shape[1], q.shape[2], q.shape[1] // k.shape[1]
    # Scaling q, not the scores: T*D elements instead of T*S (8x fewer for a 512-token prefill).
    scores = prims.matmul(fold_groups(q * scale, k.shape[1]), xp.matrix_transpose(k))  # [B, Hkv, G*T, T]
    weights = prims.softmax(xp.where(repeat_rows(mask, groups), scores, -math.inf))
    return unfold_groups(prims.matmul(weights, v), Hq, T)


def attention_with_cache(q, k, v, k_cache, v_cache, visible, scale, prims=ENGINE):
    """New tokens attend to the cached slots and, causally, to each other.

    [B, Hq, T, D] new q, [B, Hkv, T, D] new k, v; [B, Hkv, S, D] cached keys and values; visible [B, 1, T, S]:
    which cached slots each new token may see -> [B, Hq, T, D]. The cache is only read here: writing it in
    the same compiled step makes XLA copy every donated cache buffer twice per step (see kv_cache.write_kv).
    """
    xp = array_namespace(q)
    matmul = prims.matmul
    Hq, T, groups = q.shape[1], q.shape[2], q.shape[1] // k.shape[1]
    q = fold_groups(q * scale, k.shape[1])  # [B, Hkv, G*T, D]
    # (k_cache @ q.T).T reads the cache in its stored layout; q @ k_cache.T makes XLA transpose the
    # whole cache at every step.
    cached_scores = xp.matrix_transpose(matmul(k_cache, xp.matrix_transpose(q)))  # [B, Hkv, G*T, S]
    own_scores = matmul(q, xp.matrix_transpose(k))  # [B, Hkv, G*T, T]
    if T > 1:  # new tokens see each other causally; a single one (every decode step) sees itself
        own_scores = causal(own_scores, T, groups)
    scores = xp.concat([xp.where(repeat_rows(visible, groups), cached_scores, -math.inf), own_scores],
                       axis=-1)  # [B, Hkv, G*T, S + T]
    weights = prims.softmax(scores)
    n_cached = k_cache.shape[2]
    out = matmul(weights[..., :n_cached], v_cache) + matmul(weights[..., n_cached:], v)  # [B, Hkv, G*T, D]
    return unfold_groups(out, Hq, T)


def cached_attention(q, k, v, scale, mask, kv_cache=None, prims=ENGINE):
    """Attention over the prompt alone (no cache), or over the cache's first mask.shape[-1] slots and the new
    tokens: [B, Hq, T, D] q, [B, Hkv, T, D] k, v -> [B, Hq, T, D]."""
    if kv_cache is None:
        return attention(q, k, v, mask, scale, prims)
    k_cache, v_cache = kv_cache
    n_slots = mask.shape[-1]  # a static length, so a compiled step keeps static shapes
    if n_slots < k_cache.shape[2]:  # eager backends attend to the written slots only
        k_cache, v_cache = k_cache[:, :, :n_slots, :], v_cache[:, :, :n_slots, :]  # [B, Hkv, S, D]
    return attention_with_cache(q, k, v, k_cache, v_cache, mask, scale, prims)


# Masks and positions for left-padded batches. A prompt shorter than the longest is padded on the
# left, so every row's next token lands in the same cache slot; pad[b] counts row b's pad slots.

def attention_mask(query_slots, n_slots, pad):  # [T] slots, int S, [B] pad counts -> [B, 1, T, S]
    """Which of slots [0, S) each query may see, when the queries are among those slots (prefill)."""
    xp = array_namespace(query_slots, pad)
    keys = xp.arange(n_slots, dtype=query_slots.dtype, device=device_of(query_slots))
    query = query_slots[:, None]
    causal_ = keys[None, :] <= query  # [T, S]
    # A pad query may see itself, so no softmax row is all -inf; real queries never see pad keys.
    visible = (keys[None, None, :] >= pad[:, None, None]) | (keys[None, :] == query)[None, ...]  # [B, T, S]
    return xp.expand_dims(causal_[None, ...] & visible, axis=1)


def cache_mask(query_slots, n_slots, pad):  # [T] slots, int S, [B] pad counts -> [B, 1, T, S]
    """Which cached slots [0, S) each new token may see: earlier, written slots that are not padding."""
    xp = array_namespace(query_slots, pad)
    keys = xp.arange(n_slots, dtype=query_slots.dtype, device=device_of(query_slots))
    earlier = keys[None, :] < query_slots[:, None]  # [T, S]; slots at or after the query are unwritten
    return xp.expand_dims(earlier[None, ...] & (keys[None, None, :] >= pad[:, None, None]), axis=1)


def position_ids(query_slots, pad):  # [T] slots, [B] pad counts -> [B, T]
    xp = array_namespace(query_slots, pad)
    positions = query_slots[None, :] - pad[:, None]
    return xp.where(positions < 0, 0, positions)  # pad slots take position 0; their output is never used
