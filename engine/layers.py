"""The pieces both model families are built from, written once against the Python array API standard.

Every function takes arrays of any conforming library (NumPy, CuPy, JAX, PyTorch, array-api-strict)
and finds the namespace from its inputs. Linear weights are [n_out, n_in], like torch's nn.Linear: every
product reads weight rows in their stored order.

Mixed precision: the matrices (linear weights, the embedding table, lm_head) may be stored narrower than
the activations (bfloat16 weights, float32 everything else). A product then reads its input cast to the
weights' dtype and its result is widened back (cast()); norms, softmax, activations, the residual stream,
the KV cache and the logits keep the activations' dtype. With equal dtypes cast() is the array itself.

Primitives: nine pieces of a pass go through hp.prims (Primitives below), the engine's own functions
unless the backend declares the library's equivalent (Backend.product, .matmul, .layer_norm, .rms_norm,
.gelu, .silu, .softmax, .attention, .fused_linear): the one place an adapter may choose how a library computes them. prims.product is
every matrix product with a weight, x @ w.T (torch's fused reduction for bfloat16 weights on the CPU,
backends/torch_products.py); prims.matmul attention's products of two activations (CuPy records its step
with cuBLAS called through nvmath-python, since CuPy's own cuBLAS refuses a capture); the norms and
activations one kernel each where the library has one (torch: LayerNorm 1 launch instead of 9, GELU 1
instead of 8, softmax 1 instead of 5: what a GPU step's time is made of); prims.attention the prompt's
attention as one fused kernel (torch's scaled_dot_product_attention: no [B, H, T, T] scores in memory);
prims.fused_linear a linear layer's product, bias and activation in one call (torch's packed float32 weights
on the CPU: oneDNN adds the bias and applies GELU as it writes the product), declining (None) operands it has
no kernel for. A declared primitive computes the same function; parity tests hold it to the engine's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from .namespace import array_namespace


def gelu(x):  # [...] -> [...]
    xp = array_namespace(x)
    # GPT-2's tanh approximation ("gelu_new"). x * x * x, not x ** 3: NumPy's float32 power is ~200x slower.
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def silu(x):  # [...] -> [...]: x * sigmoid(x), the Llama family's activation
    xp = array_namespace(x)
    return x / (1.0 + xp.exp(-x))  # exp(-x) -> inf for very negative x: x / inf is -0, the limit


def softmax(x):  # [..., S] -> [..., S]
    xp = array_namespace(x)
    exp = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return exp / xp.sum(exp, axis=-1, keepdims=True)


def layer_norm(x, g, b, eps):  # [..., C] -> [..., C]
    xp = array_namespace(x)
    centered = x - xp.mean(x, axis=-1, keepdims=True)
    variance = xp.mean(centered * centered, axis=-1, keepdims=True)  # correction=0, as LayerNorm needs
    return g * (centered / xp.sqrt(variance + eps)) + b


def rms_norm(x, g, eps):  # [..., C] -> [..., C]: LayerNorm without centring or bias (RMSNorm)
    xp = array_namespace(x)
    return g * (x / xp.sqrt(xp.mean(x * x, axis=-1, keepdims=True) + eps))


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
    """The pieces of a pass a backend may compute with its library's own kernel (see the module's doc)."""

    product: Callable = times_transposed  # x @ w.T: [N, n_in], [n_out, n_in] -> [N, n_out]
    matmul: Callable = matmul              # attention's a @ b
    layer_norm: Callable = layer_norm      # (x, g, b, eps)
    rms_norm: Callable = rms_norm          # (x, g, eps)
    gelu: Callable = gelu
    silu: Callable = silu
    softmax: Callable = softmax            # over the last axis
    # the prompt's attention, no cache: (q, k, v, mask, scale) -> out as one fused kernel of the library (torch's
    # scaled_dot_product_attention); None: the engine's (engine/attention.py: two matmuls, a where, a softmax)
    attention: Callable | None = None
    # a whole linear layer in one library call: (x [N, n_in], w, b or None, activation None or "gelu") ->
    # activation(x @ w.T + b) [N, n_out], the bias and activation applied as the product's results are written
    # (oneDNN's post-ops), or None where the library has no such kernel for these operands (the engine then
    # runs product, bias add and activation); None here: never
    fused_linear: Callable | None = None

    @classmethod
    def of(cls, backend=None) -> "Primitives":
        """The backend's declared primitives (an attribute left None keeps the engine's)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(backend, n) for n in names if getattr(backend, n, None) is not None})


ENGINE = Primitives()  # the engine's own functions


def linear(x, w, b=None, prims=ENGINE, activation=None):
    # [B, T, n_in], [n_out, n_in], [n_out] or None -> [B, T, n_out]; activation: None or a Primitives name ("gelu")
    xp = array_namespace(x)
    *lead, n_in = x.shape
    # One 2-D matmul over all rows: BLAS runs it as one GEMM instead of one per batch row.
    rows = xp.reshape(x, (-1, n_in))
    y = prims.fused_linear(rows, w, b, activation) if prims.fused_linear is not None else None
    if y is None:
        y = prims.product(rows, w)
        if b is not None:
            y = y + b
        if activation is not None:
            y = getattr(prims, activation)(y)
    return xp.reshape(y, (*lead, w.shape[0]))


def lm_logits(x, head, n_vocab, product=times_transposed):
    # [B, T, C], [V', C] (the embedding table, or an untied lm_head) -> [B, T, V] in x's dtype
    xp = array_namespace(x)
    B, T, C = x.shape
    # The 154 MB table read in its stored layout: 3 ms per 124M step on JAX (NOTES.md change 1).
    logits = product(xp.reshape(x, (B * T, C)), head)  # [B*T, V']
    if head.shape[0] > n_vocab:  # a table padded to whole shards: its extra rows are not words
        logits = logits[:, :n_vocab]
    return xp.reshape(logits, (B, T, n_vocab))
