"""GPT-2's forward pass, written once against the Python array API standard.

Every function takes arrays of any conforming library (NumPy, CuPy, JAX, PyTorch, array-api-strict)
and finds the namespace from its inputs. Shapes use B batch, T new tokens, S key/value slots attended
to, C n_embd, H heads, D head size, V vocabulary. The head count comes from the weights' shapes
(c_attn has 3 H D rows), so a backend may pad heads and the vocabulary to whole shards (engine/layout.py).

Parameters are nested dicts in picoGPT's layout (see engine.checkpoint.nest_params). Linear weights
are [n_out, n_in], like wte and torch's nn.Linear: load_model transposes Hugging Face's Conv1D
[n_in, n_out] once, because every product then reads weight rows in their stored order.

Mixed precision: the matrices (linear weights and wte) may be stored narrower than the activations
(bfloat16 weights, float32 everything else). A product then reads its input cast to the weights' dtype
and its result is widened back (cast()); LayerNorm, softmax, GELU, the residual stream, the KV cache and
the logits keep the activations' dtype. With equal dtypes cast() is the array itself.

Primitives: five pieces of the pass go through hp.prims (Primitives below), the engine's own functions
unless the backend declares the library's equivalent (Backend.product, .matmul, .layer_norm, .gelu,
.softmax): the one place an adapter may choose how a library computes them. prims.product is every matrix
product with a weight, x @ w.T (torch's fused reduction for bfloat16 weights on the CPU,
backends/torch_products.py); prims.matmul attention's products of two activations (CuPy records its step with
cuBLAS called through nvmath-python, since CuPy's own cuBLAS refuses a capture); layer_norm, gelu and softmax
one kernel each where the library has one (torch: 1 instead of 9, 8 and 5 launches, what a GPU step's time
is made of). A declared primitive computes the same function; parity tests hold it to the engine's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from array_api_compat import device as device_of

from .namespace import array_namespace


def gelu(x):  # [...] -> [...]
    xp = array_namespace(x)
    # GPT-2's tanh approximation ("gelu_new"). x * x * x, not x ** 3: NumPy's float32 power is ~200x slower.
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def softmax(x):  # [..., S] -> [..., S]
    xp = array_namespace(x)
    exp = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return exp / xp.sum(exp, axis=-1, keepdims=True)


def layer_norm(x, g, b, eps):  # [..., C] -> [..., C]
    xp = array_namespace(x)
    centered = x - xp.mean(x, axis=-1, keepdims=True)
    variance = xp.mean(centered * centered, axis=-1, keepdims=True)  # correction=0, as LayerNorm needs
    return g * (centered / xp.sqrt(variance + eps)) + b


def cast(x, dtype):  # [...] -> [...] in dtype; x itself when it already is
    return x if x.dtype == dtype else array_namespace(x).astype(x, dtype)


def matmul(a, b):  # [..., M, K], [..., K, N] -> [..., M, N]
    return a @ b


def times_transposed(x, w):  # [N, n_in], [n_out, n_in] -> [N, n_out] in x's dtype
    """x @ w.T, computed as (w @ x.T).T so that XLA reads w in its stored layout: as x @ w.T, XLA
    materializes w.T at every call (a transpose and a copy of the weight; NOTES.md change 1). With
    narrower weights x is cast to their dtype and the result widened back."""
    return cast((w @ cast(x, w.dtype).T).T, x.dtype)


@dataclasses.dataclass(frozen=True)
class Primitives:
    """The pieces of the pass a backend may compute with its library's own kernel (see the module's doc)."""

    product: Callable = times_transposed  # x @ w.T: [N, n_in], [n_out, n_in] -> [N, n_out]
    matmul: Callable = matmul              # attention's a @ b
    layer_norm: Callable = layer_norm      # (x, g, b, eps)
    gelu: Callable = gelu
    softmax: Callable = softmax            # over the last axis

    @classmethod
    def of(cls, backend=None) -> "Primitives":
        """The backend's declared primitives (an attribute left None keeps the engine's)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(backend, n) for n in names if getattr(backend, n, None) is not None})


ENGINE = Primitives()  # the engine's own functions


def linear(x, w, b, prims=ENGINE):  # [B, T, n_in], [n_out, n_in], [n_out] -> [B, T, n_out]
    xp = array_namespace(x)
    *lead, n_in = x.shape
    # One 2-D matmul over all rows: BLAS runs it as one GEMM instead of one per batch row.
    y = prims.product(xp.reshape(x, (-1, n_in)), w) + b
    return xp.reshape(y, (*lead, w.shape[0]))


def ffn(x, c_fc, c_proj, prims=ENGINE):  # [B, T, C] -> [B, T, C]
    return linear(prims.gelu(linear(x, **c_fc, prims=prims)), **c_proj, prims=prims)


def split_qkv(qkv, head_dim):  # [B, T, 3C] head-major -> q, k, v, each [B, H, T, D]
    """c_attn's output features are head-major, (head, q|k|v, D) (engine/layout.py)."""
    xp = array_namespace(qkv)
    B, T, C3 = qkv.shape
    heads = xp.permute_dims(xp.reshape(qkv, (B, T, C3 // (3 * head_dim), 3, head_dim)), (3, 0, 2, 1, 4))  # [3, B, H, T, D]
    return heads[0, ...], heads[1, ...], heads[2, ...]


def merge_heads(x):  # [B, H, T, D] -> [B, T, C]
    xp = array_namespace(x)
    B, H, T, D = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (B, T, H * D))


def attention(q, k, v, mask, scale, prims=ENGINE):
    # [B, H, T, D], [B, H, S, D], [B, H, S, D], [B, 1, T, S] -> [B, H, T, D]
    xp = array_namespace(q)
    # Scaling q, not the scores: T*D elements instead of T*S (8x fewer for a 512-token prefill).
    scores = prims.matmul(q * scale, xp.matrix_transpose(k))
    return prims.matmul(prims.softmax(xp.where(mask, scores, -math.inf)), v)


def attention_with_cache(q, k, v, k_cache, v_cache, visible, scale, prims=ENGINE):
    """New tokens attend to the cached slots and, causally, to each other.

    [B, H, T, D] new q, k, v; [B, H, S, D] cached keys and values; visible [B, 1, T, S]: which cached slots each
    new token may see -> [B, H, T, D]. The cache is only read here: writing it in the same compiled
    step makes XLA copy every donated cache buffer twice per step (see kv_cache.write_kv).
    """
    xp = array_namespace(q)
    matmul = prims.matmul
    q = q * scale
    # (k_cache @ q.T).T reads the cache in its stored layout; q @ k_cache.T makes XLA transpose the
    # whole cache at every step.
    cached_scores = xp.matrix_transpose(matmul(k_cache, xp.matrix_transpose(q)))  # [B, H, T, S]
    own_scores = matmul(q, xp.matrix_transpose(k))  # [B, H, T, T]
    n_new = q.shape[2]
    if n_new > 1:  # new tokens see each other causally; a single one (every decode step) sees itself
        new_positions = xp.arange(n_new, dtype=xp.int32, device=device_of(q))
        own_scores = xp.where(new_positions[:, None] >= new_positions[None, :], own_scores, -math.inf)
    scores = xp.concat([xp.where(visible, cached_scores, -math.inf), own_scores], axis=-1)  # [B, H, T, S + T]
    weights = prims.softmax(scores)
    n_cached = k_cache.shape[2]
    return matmul(weights[..., :n_cached], v_cache) + matmul(weights[..., n_cached:], v)


def mha(x, c_attn, c_proj, head_dim, scale, mask, kv_cache=None, prims=ENGINE):
    # [B, T, C] -> [B, T, C], and the new (k, v)
    q, k, v = split_qkv(linear(x, **c_attn, prims=prims), head_dim)  # 3 x [B, H, T, D]
    if kv_cache is None:
        out = attention(q, k, v, mask, scale, prims)
    else:
        k_cache, v_cache = kv_cache
        n_slots = mask.shape[-1]  # a static length, so a compiled step keeps static shapes
        if n_slots < k_cache.shape[2]:  # eager backends attend to the written slots only
            k_cache, v_cache = k_cache[:, :, :n_slots, :], v_cache[:, :, :n_slots, :]  # [B, H, S, D]
        out = attention_with_cache(q, k, v, k_cache, v_cache, mask, scale, prims)
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


def lm_logits(x, head, n_vocab, product=times_transposed):
    # [B, T, C], [V', C] (wte, or an untied lm_head) -> [B, T, V] in x's dtype
    xp = array_namespace(x)
    B, T, C = x.shape
    # The 154 MB table read in its stored layout: 3 ms per 124M step on JAX (NOTES.md change 1).
    logits = product(xp.reshape(x, (B * T, C)), head)  # [B*T, V']
    if head.shape[0] > n_vocab:  # a table padded to whole shards: its extra rows are not words
        logits = logits[:, :n_vocab]
    return xp.reshape(logits, (B, T, n_vocab))


@dataclasses.dataclass(frozen=True)
class Hyper:
    """What the forward pass needs beside the weights (whose shapes give the rest): static numbers, so
    a compiler traces them in. attn_scales: each layer's factor on q (1/sqrt(D) for GPT-2); prims: how the
    primitives are computed (the engine's own, or the backend's, Primitives.of)."""

    head_dim: int
    eps: float
    n_vocab: int
    attn_scales: tuple[float, ...]
    prims: Primitives = ENGINE

    @classmethod
    def of(cls, config, backend=None) -> "Hyper":
        """config: an engine.config.GPTConfig; backend: whose declared primitives to use (None: the engine's)."""
        return cls(config.head_dim, config.layer_norm_epsilon, config.vocab_size, config.attn_scales,
                   Primitives.of(backend))


def gpt2(params, ids, positions, mask, hp: Hyper, kv_cache=None, last_only=False):
    """[B, T] ids -> [B, T, V] logits (or [B, 1, V] with last_only), and each layer's new (k, v).

    Without a cache, mask is [B, 1, T, T]: which of the T tokens each may see. With one, mask is
    [B, 1, T, S]: which of the S cached slots each new token may see (new tokens always see themselves
    and, causally, each other). The cache is read, never written: the caller stores the returned keys
    and values with kv_cache.write_kv. The logits reuse wte (tied, as GPT-2) unless params has an lm_head.
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


# Masks and positions for left-padded batches. A prompt shorter than the longest is padded on the
# left, so every row's next token lands in the same cache slot; pad[b] counts row b's pad slots.

def attention_mask(query_slots, n_slots, pad):  # [T] slots, int S, [B] pad counts -> [B, 1, T, S]
    """Which of slots [0, S) each query may see, when the queries are among those slots (prefill)."""
    xp = array_namespace(query_slots, pad)
    keys = xp.arange(n_slots, dtype=query_slots.dtype, device=device_of(query_slots))
    query = query_slots[:, None]
    causal = keys[None, :] <= query  # [T, S]
    # A pad query may see itself, so no softmax row is all -inf; real queries never see pad keys.
    visible = (keys[None, None, :] >= pad[:, None, None]) | (keys[None, :] == query)[None, ...]  # [B, T, S]
    return xp.expand_dims(causal[None, ...] & visible, axis=1)


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
