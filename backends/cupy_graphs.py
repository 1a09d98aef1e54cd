"""How the CuPy adapter records a step (backends/recording.py): a stream capture into a cupy.cuda.Graph.

CuPy refuses its own cuBLAS inside a capture ("calling cuBLAS API during stream capture is currently
unsupported", cupy/cupy#6290), though cuBLAS itself records. So while a step is warmed up and captured,
every product in it (the weights' x @ w.T, Backend.product, and attention's a @ b, Backend.matmul) calls
cuBLAS through nvmath-python's bindings on a handle bound to the capture stream: measured to record and
replay on the H100 (notes/gpu-facts.md: the [50257, 768] float32 product at 2,765 GB/s). Outside a
recording (the prefill, the eager variant) the products are CuPy's own.

Written on a machine without a GPU: the first GPU run confirms it (benchmarks/gpu/check.sh).
"""

from __future__ import annotations

import numpy as np

import cupy

from arraygpt.engine.layers import matmul, times_transposed

from .recording import RecordingError

# Runs of the step on the capture stream before its capture: cuBLAS handles, lazily loaded kernels and the
# graph's memory-pool blocks are made there, never inside the capture.
WARMUP_RUNS = 2

# cudaDataType_t and cuBLAS's enums (stable parts of the CUDA ABI; nvmath.bindings.cublas names the same).
_DATA_TYPE = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.float16): 2}
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32, _COMPUTE_64F = 68, 77, 70
_OP_N, _OP_T = 0, 1
_ALGO_DEFAULT = -1


class CublasProducts:
    """x @ w.T and a @ b through cuBLAS called by nvmath-python on the current CuPy stream while `recording`
    (set by CupyGraph around warm-up and capture), CuPy's own otherwise. Row-major arrays are read by
    column-major cuBLAS as their transposes: C = A @ B is computed as C^T = B^T @ A^T."""

    def __init__(self, tf32: bool):
        from nvmath.bindings import cublas  # an ImportError here: the adapter says what to install
        self.cublas, self.tf32 = cublas, tf32
        self.recording = False
        self._handles: dict[int, int] = {}  # stream pointer -> a handle bound to that stream
        # alpha 1 and beta 0 as host scalars in each compute type (kept alive: cuBLAS reads them by pointer)
        self._scalars = {np.float32: (np.ones(1, np.float32), np.zeros(1, np.float32)),
                         np.float64: (np.ones(1, np.float64), np.zeros(1, np.float64))}

    def _handle(self) -> int:
        stream = cupy.cuda.get_current_stream().ptr
        if stream not in self._handles:  # in the warm-up, never first inside a capture
            handle = self.cublas.create()
            self.cublas.set_stream(handle, stream)
            self._handles[stream] = handle
        return self._handles[stream]

    def _gemm(self, first, op_first, ld_first, second, op_second, ld_second, out, m, n, k, batch,
              stride_first, stride_second):
        """cuBLAS's column-major out (m x n, ld m) = op(first) @ op(second), `batch` times at the strides."""
        dtype = np.dtype(out.dtype)
        wide = np.float64 if dtype == np.float64 else np.float32
        compute = (_COMPUTE_64F if wide is np.float64
                   else _COMPUTE_32F_FAST_TF32 if self.tf32 and dtype == np.float32 else _COMPUTE_32F)
        alpha, beta = self._scalars[wide]
        kind = _DATA_TYPE[dtype]
        self.cublas.gemm_strided_batched_ex(
            self._handle(), op_first, op_second, m, n, k, alpha.ctypes.data,
            first.data.ptr, kind, ld_first, stride_first, second.data.ptr, kind, ld_second, stride_second,
            beta.ctypes.data, out.data.ptr, kind, m, m * n, batch, compute, _ALGO_DEFAULT)

    def product(self, x, w):  # [N, n_in], [n_out, n_in] -> [N, n_out] in x's dtype
        if not self.recording:
            return times_transposed(x, w)
        x_w = cupy.ascontiguousarray(x.astype(w.dtype, copy=False))
        n_rows, n_in = x_w.shape
        out = cupy.empty((n_rows, w.shape[0]), dtype=w.dtype)
        # out^T (n_out x N) = w (read as its transpose, then transposed back) @ x^T
        self._gemm(w, _OP_T, n_in, x_w, _OP_N, n_in, out, w.shape[0], n_rows, n_in, 1, 0, 0)
        return out.astype(x.dtype, copy=False)

    def matmul(self, a, b):  # [..., M, K], [..., K, N] -> [..., M, N]
        if not self.recording:
            return matmul(a, b)
        a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
        *lead, rows, inner = a.shape
        cols = b.shape[-1]
        batch = int(np.prod(lead, dtype=np.int64)) if lead else 1
        out = cupy.empty((*lead, rows, cols), dtype=a.dtype)
        # out^T (N x M) = b^T (b row-major read as N x K) @ a^T (a row-major read as K x M)
        self._gemm(b, _OP_N, cols, a, _OP_N, inner, out, cols, rows, inner, batch, inner * cols, rows * inner)
        return out


def write_slot(cache, new, slot):  # [B, H, S, D], [B, H, 1, D], 0-d int slot -> the same cache, written
    """new into the cache at a slot that stays on the device, in place (a masked copy over the slots)."""
    at_slot = cupy.arange(cache.shape[2], dtype=slot.dtype) == slot  # [S]
    cupy.copyto(cache, new, where=at_slot[:, None])
    return cache


class CupyGraph:
    """A stream capture: warm-up and capture on a stream of its own with a memory pool of its own (so the
    buffers the graph baked in are never lent to anything else), the products on cuBLAS meanwhile; replay
    launches the graph on the current stream, after the copies into its inputs."""

    def __init__(self, device, products: CublasProducts):
        self.device, self.products = device, products
        self.pool, self.graph, self.stream = cupy.cuda.MemoryPool(), None, None

    def capture(self, run):
        if self.stream is not None:
            raise RecordingError("this graph has already captured a step: a graph captures once")
        with self.device:
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.stream.wait_event(cupy.cuda.get_current_stream().record())
            self.products.recording = True
            try:
                with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
                    for _ in range(WARMUP_RUNS):
                        run()
                    self.stream.begin_capture()
                    try:
                        outputs = run()
                    finally:
                        self.graph = self.stream.end_capture()
            finally:
                self.products.recording = False
            cupy.cuda.get_current_stream().wait_event(self.stream.record())
        return outputs

    def replay(self):
        self.graph.launch(cupy.cuda.get_current_stream())


def copy_into(static, value):
    cupy.copyto(static, value)


def clone(x):
    return x.copy()
