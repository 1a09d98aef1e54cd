"""How the torch adapter computes a product with bfloat16 weights on the CPU (Backend.product).

For one activation row, eager torch (oneDNN) reads bfloat16 weights slower than float32 ones on this
project's CPUs; Inductor's own fused reduction, sum(widen(w) * x) compiled by torch.compile, widens each
weight as it streams past: in benchmarks/studies/half_products.py (results/2026-12-03-half-products*.json,
NOTES.md) a sweep of 124M's products took 1.5x less time than eager bfloat16 and 1.25-1.45x less than
float32. Every other product (several rows, float16 or float32 weights) is the engine's.
The reduction keeps x in float32 (no rounding to bfloat16) and accumulates in float32.
"""

from __future__ import annotations

import warnings

import torch

from engine.layers import times_transposed


def _widening_dot(x, w):  # [1, n_in] float32, [n_out, n_in] bfloat16 -> [1, n_out] float32
    return torch.sum(w.float() * x, dim=-1)[None, :]


class BfloatRowProduct:
    """The product of one float32 row with bfloat16 weights through Inductor (one compilation per dtype
    pair: its shapes are symbolic), any other through the engine's times_transposed. If Inductor cannot
    compile here (it needs a C++ compiler), every product is the engine's, with one warning."""

    def __init__(self):
        self._compiled = torch.compile(_widening_dot, dynamic=True)
        self.failed: str | None = None
        self._built = False  # once a call has compiled, later errors are the caller's, not Inductor's

    def __call__(self, x, w):  # [N, n_in], [n_out, n_in] -> [N, n_out] in x's dtype
        if x.shape[0] != 1 or w.dtype != torch.bfloat16 or x.dtype != torch.float32 or self.failed:
            return times_transposed(x, w)
        if self._built:
            return self._compiled(x, w)
        try:
            y = self._compiled(x, w)
            self._built = True
            return y
        except Exception as error:  # Inductor's failures have no common type; the first line says why
            self.failed = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"torch.compile could not build the bfloat16 product here ({self.failed}); "
                          "using eager torch (slower for bfloat16 weights at batch 1)", stacklevel=2)
            return times_transposed(x, w)
