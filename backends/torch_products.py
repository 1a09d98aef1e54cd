"""How the torch adapter computes the weight products on the CPU (Backend.product): packed float32 matrices
through oneDNN (below), one activation row through a fused reduction, the rest through the engine's product.

For one float32 row, eager torch reads the weights slowly on this project's CPUs: bfloat16 weights through
oneDNN slower than float32 ones, and float32 weights through MKL's GEMV at 17.5-18.4 GB/s on the AMD Zen 5
where NumPy's OpenBLAS reads 44 (NOTES.md, 2026-12-05). Inductor's own fused reduction, sum(widen(w) * x)
compiled by torch.compile, streams the weights (widening bfloat16 ones as they pass): in
benchmarks/studies/half_products.py (results/2026-12-03-half-products*.json) a sweep of 124M's bfloat16 products
took 1.5x less time than eager bfloat16 and 1.25-1.45x less than float32, and float32 weights read 29-38 GB/s.
float16 weights took that path too on 2026-12-05, when eager float16 read 9.4 GB/s on the AMX Xeon where the
reduction read 14.3 (results/2026-12-05-products-f16-xeon.json; on 2026-12-03 they were even). Every other
product (several rows) is the engine's. The reduction keeps x in float32 and accumulates in float32.

float32 weights that the products alone read (engine.layout.Layout.product_only) are held packed for
oneDNN's linear (torch.ops.mkldnn._reorder_linear_weight, what Inductor's CPU freezing does, as ONNX Runtime
prepacks its weights for MLAS): a step then streams them without the per-call packing a BLAS GEMM does for a
few rows. Measured on 124M's matrices (results/2026-12-05-b8-products-f32-zen5.json, -b1-b32-...): 48 GB/s at
8 rows where torch's own product reads 16, 42 at one row (the reduction: 34), 23 at 32 rows (9). The embedding
table, which the lookup reads too, stays as it is (its tied logits take the paths above).
"""

from __future__ import annotations

import warnings

import torch

from arraygpt.engine.layers import times_transposed


def row_weights() -> tuple:
    """The weights' dtypes whose one-row products run the reduction on this CPU, chosen by a switch torch declares:
    float16 only where torch sends float16 products to oneDNN (torch.ops.mkldnn._is_mkldnn_fp16_supported: CPUs
    with AVX-512 FP16, AVX-NE-CONVERT or AMX-FP16), which read 9.4 GB/s on the AMX Xeon where the reduction read
    14.3. Elsewhere torch's own float16 GEMV (F16C conversions in registers, float32 sums; the engine's product,
    which rounds the row to float16 as llama.cpp's F16 dot does) reads at least as fast: 25.8-28.1 GB/s against
    21.9-26.2 for the reduction on the Zen 4 EPYC (results/2026-12-06-products-f16-row-zen4.json), level with ATen
    capped at AVX2 there (22-29 against 25-30: -avx2-capped-zen4.json). bfloat16 and float32 rows take the
    reduction on every CPU measured."""
    onednn_float16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported()
    return (torch.bfloat16, torch.float16, torch.float32) if onednn_float16 else (torch.bfloat16, torch.float32)
PACK_ROWS = 8  # the rows oneDNN packs for: as fast at 1 and 32 rows as a packing for those (measured)


def pack(w):  # [n_out, n_in] float32 -> the same, in oneDNN's blocked layout (opaque: products only)
    return torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS)


# activation -> oneDNN's post-op (attr, algorithm): GPT-2's GELU is the tanh form. SiLU is not here: as a post-op
# ("swish") it was no faster on the Llama family's gate (NOTES.md 2026-12-06), so the engine applies it.
POST_OPS = {None: ("none", ""), "gelu": ("gelu", "tanh")}


def packed_product(x, w, b=None, activation=None):
    # [N, n_in] float32, packed [n_out, n_in], [n_out] or None -> activation(x @ w.T + b) [N, n_out] float32
    attr, algorithm = POST_OPS[activation]
    return torch.ops.mkldnn._linear_pointwise(x, w, b, attr, [], algorithm)


def fused_linear(x, w, b, activation):
    # [N, n_in], [n_out, n_in], [n_out] or None -> activation(x @ w.T + b) [N, n_out], or None: not packed here
    """The bias and activation as post-ops of oneDNN's packed product (what Inductor's CPU freezing emits): both
    applied as the product is written, instead of two more passes over [N, n_out]. In the committed cpu-targets
    runs on the AMX Xeon, torch's prefill 128 went from 1,036 to 1,403 tok/s with it (not side by side; +8% side
    by side, NOTES.md 2026-12-06). Weights not packed (the tied table, half-width, CUDA) and activations without a
    post-op are the engine's to compute (Primitives.fused_linear)."""
    if not w.is_mkldnn or activation not in POST_OPS or x.dtype != torch.float32 or (b is not None and b.dtype != x.dtype):
        return None
    return packed_product(x, w, b, activation)


def _widening_dot(x, w):  # [1, n_in] float32, [n_out, n_in] bfloat16, float16 or float32 -> [1, n_out] float32
    return torch.sum(w.float() * x, dim=-1)[None, :]


class RowProduct:
    """A packed matrix's product through oneDNN at any row count; the product of one float32 row with
    bfloat16, float16 (where row_weights takes it) or float32 (unpacked: the tied table) weights through Inductor (one compilation per dtype pair: its
    shapes are symbolic); any other through the engine's times_transposed. If Inductor cannot compile here (it
    needs a C++ compiler), those row products are the engine's, with one warning."""

    def __init__(self):
        self.row_weights = row_weights()
        self._compiled = torch.compile(_widening_dot, dynamic=True)
        self.failed: str | None = None
        self._built = False  # once a call has compiled, later errors are the caller's, not Inductor's

    def describe(self, dtype: str, weights: str, packed: bool, engine: str) -> str:
        """In words, what __call__ does at these numerics (Backend.products_for; the bench records it): packed
        says the adapter holds these weights packed, engine names the engine's product."""
        if packed:
            return ("oneDNN's prepacked linear at every row count (the linear weights, with their bias and GELU as "
                    "post-ops, and the tied table's packed copy)")
        if dtype != "float32" or getattr(torch, weights) not in self.row_weights or self.failed:
            return engine
        return f"one row: Inductor's fused reduction sum(widen(w) * x) in float32; more rows: {engine}"

    def __call__(self, x, w):  # [N, n_in], [n_out, n_in] -> [N, n_out] in x's dtype
        if w.is_mkldnn:
            return packed_product(x, w)
        if x.shape[0] != 1 or w.dtype not in self.row_weights or x.dtype != torch.float32 or self.failed:
            return times_transposed(x, w)
        if self._built:
            return self._compiled(x, w)
        try:
            y = self._compiled(x, w)
            self._built = True
            return y
        except Exception as error:  # Inductor's failures have no common type; the first line says why
            self.failed = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"torch.compile could not build the one-row product here ({self.failed}); "
                          "using eager torch (slower at batch 1)", stacklevel=2)
            return times_transposed(x, w)
