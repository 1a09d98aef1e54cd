"""The torch adapter's declared primitives (engine.layers.Primitives): LayerNorm, RMSNorm, GELU, SiLU and softmax
as one torch kernel each instead of the engine's 9, 5, 8, 3 and 5 elementwise operations, and the prompt's
attention as scaled_dot_product_attention (fused: no [B, H, T, T] scores in memory). The same functions: the parity tests
hold them to the engine's and to HF's. On a GPU a recorded step is launch-bound (the H200 profile: 734
launches per 124M step, ~85% of them these pieces at 2-3 us each whatever their size), and on a CPU each
operation is a pass over memory and a dispatch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from arraygpt.engine.layers import layer_norm as engine_layer_norm, rms_norm as engine_rms_norm


def layer_norm(x, g, b, eps):  # [..., C] -> [..., C]
    if not (x.dtype == g.dtype == b.dtype):  # torch's kernel wants one dtype; mixed ones keep the engine's
        return engine_layer_norm(x, g, b, eps)
    return F.layer_norm(x, (x.shape[-1],), g, b, eps)


def rms_norm(x, g, eps):  # [..., C] -> [..., C]: RMSNorm (the Llama family), one kernel instead of 5
    if x.dtype != g.dtype:
        return engine_rms_norm(x, g, eps)
    return F.rms_norm(x, (x.shape[-1],), g, eps)


def silu(x):  # [...] -> [...]
    return F.silu(x)


def gelu(x):  # [...] -> [...]: GPT-2's tanh form ("gelu_new"), torch's approximate="tanh"
    return F.gelu(x, approximate="tanh")


def softmax(x):  # [..., S] -> [..., S]
    return torch.softmax(x, dim=-1)


def attention(q, k, v, mask, scale):
    # [B, Hq, T, D], [B, Hkv, T, D] k and v, [B, 1, T, T] bool (True: visible) -> [B, Hq, T, D]
    # One fused kernel (a flash-attention loop on the CPU): the [B, H, T, T] scores are never written out; query
    # head h reads key/value head h // G, as the engine's grouped attention pairs them.
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])
