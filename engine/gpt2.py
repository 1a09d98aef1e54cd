"""GPT-2's forward pass, written once against the Python array API standard (the pieces it shares with the
Llama family are engine/layers.py and engine/attention.py).

Shapes use B batch, T new tokens, S key/value slots attended to, C n_embd, H heads, D head size, V
vocabulary. The head count comes from the weights' shapes (c_attn has 3 H D rows), so a backend may pad
heads and the vocabulary to whole shards (engine/layout.py).

Parameters are nested dicts in picoGPT's layout (see engine.checkpoint.nest_params). Linear weights
are [n_out, n_in], like wte and torch's nn.Linear: load_model transposes Hugging Face's Conv1D
[n_in, n_out] once, because every product then reads weight rows in their stored order.
"""

from __future__ import annotations

from .attention import cached_attention, merge_heads
from .layers import ENGINE, cast, linear, lm_logits
from .namespace import array_namespace


def ffn(x, c_fc, c_proj, prims=ENGINE):  # [B, T, C] -> [B, T, C]
    return linear(linear(x, **c_fc, prims=prims, activation="gelu"), **c_proj, prims=prims)


def split_qkv(qkv, head_dim):  # [B, T, 3C] head-major -> q, k, v, each [B, H, T, D]
    """c_attn's output features are head-major, (head, q|k|v, D) (engine/layout.py)."""
    xp = array_namespace(qkv)
    B, T, C3 = qkv.shape
    heads = xp.permute_dims(xp.reshape(qkv, (B, T, C3 // (3 * head_dim), 3, head_dim)), (3, 0, 2, 1, 4))  # [3, B, H, T, D]
    return heads[0, ...], heads[1, ...], heads[2, ...]


def mha(x, c_attn, c_proj, head_dim, scale, mask, kv_cache=None, prims=ENGINE):
    # [B, T, C] -> [B, T, C], and the new (k, v)
    q, k, v = split_qkv(linear(x, **c_attn, prims=prims), head_dim)  # 3 x [B, H, T, D]
    out = cached_attention(q, k, v, scale, mask, kv_cache, prims)
    return linear(merge_heads(out), **c_proj, prims=prims), (k, v)


def transformer_block(x, mlp, attn, ln_1, ln_2, head_dim, scale, eps, mask, kv_cache=None, prims=ENGINE):
    # [B, T, C] -> [B, T, C], and this layer's new (k, v)
    a, new_kv = mha(prims.layer_norm(x, **ln_1, eps=eps), **attn, head_dim=head_dim, scale=scale, mask=mask,
                    kv_cache=kv_cache, prims=prims)
    x = x + a
    x = x + ffn(prims.layer_norm(x, **ln_2, eps=eps), **mlp, prims=prims)
    return x, new_kv


def embed(ids, positions, wte, wpe):  # [B, T] token ids, [B, T] positions -> [B, T, C] in wpe's dtype
    xp = array_namespace(wte)
    B, T = ids.shape
    tokens = cast(xp.take(wte, xp.reshape(ids, (-1,)), axis=0), wpe.dtype)
    rows = tokens + xp.take(wpe, xp.reshape(positions, (-1,)), axis=0)
    return xp.reshape(rows, (B, T, wte.shape[1]))


def gpt2(params, ids, positions, mask, hp, kv_cache=None, last_only=False):
    """[B, T] ids -> [B, T, V] logits (or [B, 1, V] with last_only), and each layer's new (k, v).

    hp: engine.families.Hyper. Without a cache, mask is [B, 1, T, T]: which of the T tokens each may see.
    With one, mask is [B, 1, T, S]: which of the S cached slots each new token may see (new tokens always see
    themselves and, causally, each other). The cache is read, never written: the caller stores the returned
    keys and values with kv_cache.write_kv. The logits reuse wte (tied, as GPT-2) unless params has an lm_head.
    """
    x = embed(ids, positions, params["wte"], params["wpe"])
    new_kv = []
    for i, block in enumerate(params["blocks"]):
        x, layer_kv = transformer_block(x, **block, head_dim=hp.head_dim, scale=hp.attn_scales[i], eps=hp.eps,
                                        mask=mask, kv_cache=None if kv_cache is None else kv_cache[i],
                                        prims=hp.prims)
        new_kv.append(layer_kv)
    if last_only:
        x = x[:, -1:, :]  # generation needs the last position only: skips most of the vocab projection
    x = hp.prims.layer_norm(x, **params["ln_f"], eps=hp.eps)
    return lm_logits(x, params.get("lm_head", params["wte"]), hp.n_vocab, hp.prims.product), new_kv
