"""The CuPy adapter's declared primitives (engine.layers.Primitives), in float32 and float16: GELU and SiLU as one
ElementwiseKernel each, RMSNorm as two (a ReductionKernel of squares, one scaling kernel), LayerNorm and softmax as three kernels each (a CuPy reduction, a ReductionKernel whose map
does the elementwise part, one ElementwiseKernel) instead of the engine's 9, 8 and 5 separate operations.
The H200 profile of the recorded CuPy step counted 844 launches per 124M token, ~85% of them such small
elementwise pieces at 2-3 us each (NOTES). Arithmetic in float32 whatever the stored dtype; other dtypes
(float64) keep the engine's functions. Written without a GPU: the GPU tests (tests/backends/test_primitives.py)
hold each to NumPy float64 on the first GPU that runs them."""

from __future__ import annotations

import cupy

from arraygpt.engine.layers import gelu as engine_gelu, layer_norm as engine_layer_norm, rms_norm as engine_rms_norm
from arraygpt.engine.layers import silu as engine_silu, softmax as engine_softmax

FUSED_DTYPES = (cupy.float32, cupy.float16)

_gelu = cupy.ElementwiseKernel(
    "T x", "T y",
    "float v = (float)x; y = (T)(0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v))))",
    "arraygpt_gelu_tanh")
# sum over the last axis of (x - m)^2 and of exp(x - m), m broadcast from [..., 1]
_sum_squares = cupy.ReductionKernel(
    "T x, T m", "float y", "((float)x - (float)m) * ((float)x - (float)m)", "a + b", "y = a", "0",
    "arraygpt_sum_squares", reduce_type="float")
_sum_exp = cupy.ReductionKernel(
    "T x, T m", "float y", "expf((float)x - (float)m)", "a + b", "y = a", "0", "arraygpt_sum_exp",
    reduce_type="float")
_normalize = cupy.ElementwiseKernel(
    "T x, T m, float s, T g, T b, float inv_n, float eps", "T y",
    "y = (T)((float)g * ((float)x - (float)m) * rsqrtf(s * inv_n + eps) + (float)b)", "arraygpt_layer_norm")
_silu = cupy.ElementwiseKernel(
    "T x", "T y", "float v = (float)x; y = (T)(v / (1.0f + expf(-v)))", "arraygpt_silu")
# the Llama family's RMSNorm: a sum of squares (no centring), then one scaling kernel
_sum_sq = cupy.ReductionKernel(
    "T x", "float y", "(float)x * (float)x", "a + b", "y = a", "0", "arraygpt_sum_sq", reduce_type="float")
_rms_scale = cupy.ElementwiseKernel(
    "T x, float s, T g, float inv_n, float eps", "T y",
    "y = (T)((float)g * (float)x * rsqrtf(s * inv_n + eps))", "arraygpt_rms_norm")
_exp_over = cupy.ElementwiseKernel(
    "T x, T m, float s", "T y", "y = (T)(expf((float)x - (float)m) / s)", "arraygpt_softmax")


def gelu(x):  # [...] -> [...]
    return _gelu(x) if x.dtype in FUSED_DTYPES else engine_gelu(x)


def layer_norm(x, g, b, eps):  # [..., C] -> [..., C]
    if x.dtype not in FUSED_DTYPES or not (x.dtype == g.dtype == b.dtype):
        return engine_layer_norm(x, g, b, eps)
    mean = cupy.mean(x, axis=-1, keepdims=True)  # in x's dtype, as the engine's
    squares = _sum_squares(x, mean, axis=-1, keepdims=True)
    return _normalize(x, mean, squares, g, b, 1.0 / x.shape[-1], float(eps))


def silu(x):  # [...] -> [...]
    return _silu(x) if x.dtype in FUSED_DTYPES else engine_silu(x)


def rms_norm(x, g, eps):  # [..., C] -> [..., C]: two kernels instead of the engine's 5
    if x.dtype not in FUSED_DTYPES or x.dtype != g.dtype:
        return engine_rms_norm(x, g, eps)
    return _rms_scale(x, _sum_sq(x, axis=-1, keepdims=True), g, 1.0 / x.shape[-1], float(eps))


def softmax(x):  # [..., S] -> [..., S]
    if x.dtype not in FUSED_DTYPES:
        return engine_softmax(x)
    top = cupy.max(x, axis=-1, keepdims=True)
    return _exp_over(x, top, _sum_exp(x, top, axis=-1, keepdims=True))
