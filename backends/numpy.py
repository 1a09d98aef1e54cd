"""NumPy (CPU), through array_api_compat's namespace. Tensors stay read-only views of the mapped file
(asarray of a view that already has the dtype does not copy), except those load_model asks for
transposed: the linear weights."""

from __future__ import annotations

import ctypes
import os
import sys

from array_api_compat import numpy as xp

from .base import ArrayBackend, BackendError, check_precision


class NumpyBackend(ArrayBackend):
    name = "numpy"
    xp = xp
    device = "cpu"


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory_for_reuse() -> bool:
    """Let glibc reuse freed temporaries instead of returning them to the OS at once.

    NumPy allocates a fresh array for every intermediate. Above glibc's default 128 KiB threshold
    each one is mmap'ed and munmap'ed, and the next touches its pages again: a page fault per 4 KiB.
    Raising the thresholds (what torch's and JAX's caching allocators achieve their own way) made a
    124M prefill 10-30% faster here. Process-wide, Linux/glibc only; ARRAYGPT_NUMPY_MALLOC=0 skips it.
    """
    if not sys.platform.startswith("linux") or os.environ.get("ARRAYGPT_NUMPY_MALLOC", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return False
    # Arrays over 32 MiB (a probe's matrix, a long prompt's logits) still go back to the OS at once,
    # and at most 64 MiB of free heap is kept: resident memory stays near the live arrays.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20))


def create(device: str | None = None, precision: str = "float32", **options) -> NumpyBackend:
    if device not in (None, "cpu"):
        raise BackendError(f"backend 'numpy' runs on the cpu only, not '{device}'")
    check_precision("numpy", precision, tf32_here=False, where="the cpu")
    keep_freed_memory_for_reuse()
    return NumpyBackend()
