"""The roofline probes: each runner measures its device's memory bandwidth (a matrix x vector product, the way a
decode step reads its weights) and matmul rate with its own library, at the scenario's precision, in the
worker; benchmarks/judge/roofline.py turns them and the model's shape into floors and ceilings."""

from __future__ import annotations

import time

import numpy as np

from arraygpt.engine.config import ITEMSIZE


def median_time(fn, repeats=5, pick=np.median):
    """The median (or `pick`) of `repeats` timed calls after one untimed; fn must block until its work is
    done (it synchronizes the device itself)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(pick(times))


def _gemv_time(xp, device, dtype, sync, product, rng, rows, cols) -> float:
    """Median time of matrix @ vector; the matrix is freed on return, before the matmul probe."""
    matrix = xp.asarray(rng.random((rows, cols), dtype=np.float32), dtype=dtype, device=device)
    vector = matrix[0, :]
    return median_time(lambda: sync(product(matrix, vector)))


def _matmul(a, b):
    return a @ b


def probe(backend, dtype: str) -> dict:
    """Measure memory bandwidth (matrix x vector over 512 MiB, the way a decode step reads weights)
    and matmul rate (n x n x n) on one backend, at its precision (the products go through
    backend.compile, as the model's do: JAX's matmul precision, torch's and CuPy's TF32 switch).
    Random data: zeros can run faster than real data."""
    xp, device, sync = backend.xp, backend.device, backend.synchronize
    on_gpu = backend.device_key() != "cpu"
    rows, cols = (8192, 16384) if not on_gpu else (32768, 32768)
    rng = np.random.default_rng(0)
    product = backend.compile(_matmul)
    nbytes = rows * cols * ITEMSIZE[dtype]
    bandwidth = nbytes / _gemv_time(xp, device, backend.dtype(dtype), sync, product, rng, rows, cols)
    n = _matmul_size(xp, device, backend.dtype(dtype), sync, product, rng, 2048 if not on_gpu else 8192)
    a = xp.asarray(rng.random((n, n), dtype=np.float32), dtype=backend.dtype(dtype), device=device)
    rate = 2 * n**3 / median_time(lambda: sync(product(a, a)), repeats=3)
    return {"bandwidth_bytes_s": bandwidth, "matmul_flops_s": rate, "gemv_bytes": nbytes, "matmul_n": n}


def _matmul_size(xp, device, dtype, sync, product, rng, largest: int) -> int:
    """The product size for the matmul probe: `largest`, unless this library's kernel is so slow in this
    dtype that one product would take over ~0.5 s (torch's bfloat16 on an AVX2-only CPU: 1.5 GFLOP/s, so
    2048^3 took 12 s a call); then the largest multiple of 256 that fits, at least 512."""
    small = xp.asarray(rng.random((512, 512), dtype=np.float32), dtype=dtype, device=device)
    seconds = median_time(lambda: sync(product(small, small)), repeats=1)
    rate = 2 * 512**3 / max(seconds, 1e-9)
    fits = int((0.5 * rate / 2) ** (1 / 3)) // 256 * 256
    return max(512, min(largest, fits))
