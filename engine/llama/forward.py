"""The Llama family's forward pass (Llama 2/3, Qwen2, SmolLM2, TinyLlama), written once against the Python
array API standard, from the pieces it shares with GPT-2 (engine/layers.py, engine/attention.py).

What differs from GPT-2: RMSNorm instead of LayerNorm, rotary position embeddings instead of a position
table, the SwiGLU MLP (down(silu(gate(x)) * up(x))), grouped-query attention (fewer key/value heads than
query heads: the KV cache holds the key/value heads only), optional q/k/v biases (Qwen2), no other biases.

Shapes: B batch, T new tokens, C hidden size, Hq query heads, Hkv key/value heads, D head size, I MLP width,
V vocabulary. Weights are HF's nn.Linear [n_out, n_in], as stored; params are nested by
engine/llama/checkpoint.nest_params.
"""

from __future__ import annotations

from ..attention import cached_attention, merge_heads
from ..layers import ENGINE, cast, linear, lm_logits
from ..namespace import array_namespace


def rotary_tables(positions, inv_freq, dtype):  # [B, T] positions, [D/2] frequencies -> cos, sin [B, 1, T, D]
    """As HF computes them: angles position * frequency in inv_freq's dtype (float32, float64 for a float64
    model), then cos and sin in the activations' dtype."""
    xp = array_namespace(positions)
    angles = xp.astype(positions, inv_freq.dtype)[..., None] * inv_freq  # [B, T, D/2]
    angles = xp.expand_dims(xp.concat([angles, angles], axis=-1), axis=1)  # [B, 1, T, D]
    return cast(xp.cos(angles), dtype), cast(xp.sin(angles), dtype)


def rotate(x, cos, sin):  # [B, H, T, D] -> [B, H, T, D]: HF's rotate_half convention (halves, not pairs)
    xp = array_namespace(x)
    half = x.shape[-1] // 2
    rotated = xp.concat([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def split_heads(x, n_heads):  # [B, T, H*D] -> [B, H, T, D]
    xp = array_namespace(x)
    B, T, HD = x.shape
    return xp.permute_dims(xp.reshape(x, (B, T, n_heads, HD // n_heads)), (0, 2, 1, 3))


def gqa(x, q, k, v, o, head_dim, scale, mask, cos, sin, kv_cache=None, prims=ENGINE):
    # [B, T, C] -> [B, T, C], and the new (k, v) [B, Hkv, T, D] (k rotated, as the cache keeps it)
    n_q, n_kv = q["w"].shape[0] // head_dim, k["w"].shape[0] // head_dim
    q_ = rotate(split_heads(linear(x, **q, prims=prims), n_q), cos, sin)   # [B, Hq, T, D]
    k_ = rotate(split_heads(linear(x, **k, prims=prims), n_kv), cos, sin)  # [B, Hkv, T, D]
    v_ = split_heads(linear(x, **v, prims=prims), n_kv)                    # [B, Hkv, T, D]
    out = cached_attention(q_, k_, v_, scale, mask, kv_cache, prims)       # [B, Hq, T, D]
    return linear(merge_heads(out), **o, prims=prims), (k_, v_)


def swiglu(x, gate, up, down, prims=ENGINE):  # [B, T, C] -> [B, T, C]
    return linear(linear(x, **gate, prims=prims, activation="silu") * linear(x, **up, prims=prims), **down, prims=prims)


def decoder_block(x, attn_norm, attn, mlp_norm, mlp, head_dim, scale, eps, mask, cos, sin, kv_cache=None,
                  prims=ENGINE):
    # [B, T, C] -> [B, T, C], and this layer's new (k, v)
    a, new_kv = gqa(prims.rms_norm(x, attn_norm, eps), **attn, head_dim=head_dim, scale=scale, mask=mask, cos=cos,
                    sin=sin, kv_cache=kv_cache, prims=prims)
    x = x + a
    return x + swiglu(prims.rms_norm(x, mlp_norm, eps), **mlp, prims=prims), new_kv


def llama(params, ids, positions, mask, hp, kv_cache=None, last_only=False):
    """[B, T] ids at [B, T] positions -> [B, T, V] logits (or [B, 1, V] with last_only), and each layer's new
    (k, v). mask, kv_cache and the returned keys and values as GPT-2's (engine/gpt2.py); hp: engine.families.Hyper."""
    xp = array_namespace(ids)
    dtype = params["norm"].dtype  # the activations' (a norm's weight is never stored narrower)
    B, T = ids.shape
    x = cast(xp.reshape(xp.take(params["embed"], xp.reshape(ids, (-1,)), axis=0), (B, T, -1)), dtype)  # [B, T, C]
    cos, sin = rotary_tables(positions, params["inv_freq"], dtype)
    new_kv = []
    for i, block in enumerate(params["blocks"]):
        x, layer_kv = decoder_block(x, **block, head_dim=hp.head_dim, scale=hp.attn_scales[i], eps=hp.eps, mask=mask,
                                    cos=cos, sin=sin, kv_cache=None if kv_cache is None else kv_cache[i],
                                    prims=hp.prims)
        new_kv.append(layer_kv)
    if last_only:
        x = x[:, -1:, :]
    x = hp.prims.rms_norm(x, params["norm"], hp.eps)
    return lm_logits(x, params.get("lm_head", params["embed"]), hp.n_vocab, hp.prims.product), new_kv
