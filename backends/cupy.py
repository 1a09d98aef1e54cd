"""CuPy on an NVIDIA GPU: weights copied to the device once, results brought back with .get()."""

from __future__ import annotations

import numpy as np

from .base import ArrayBackend, BackendUnavailable, check_precision, host_array, parse_device

import cupy  # noqa: E402  (an ImportError here tells the registry that cupy is missing)
from array_api_compat import cupy as xp  # noqa: E402


class CupyBackend(ArrayBackend):
    name = "cupy"
    xp = xp

    def __init__(self, device: str | None = None, precision: str = "float32"):
        kind, index = parse_device(device)
        if kind not in (None, "gpu"):
            raise BackendUnavailable("cupy", f"CuPy runs on NVIDIA GPUs only, not on '{device}'")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # CUDARuntimeError, or a missing driver library
            raise BackendUnavailable("cupy", f"no usable CUDA GPU or driver ({type(err).__name__}: {err})") from None
        if index >= count:
            raise BackendUnavailable("cupy", f"there is no CUDA device {index} ({count} present)")
        self.device = cupy.cuda.Device(index)
        major = int(self.device.compute_capability[:-1] or 0)
        self.precision = check_precision("cupy", precision, tf32_here=major >= 8, where=f"gpu:{index}")

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        """Eager: fn, with each call setting CuPy's float32 matmul compute type (process-wide) to this
        backend's precision: TF32 tensor cores, or cuBLAS's default IEEE float32."""
        tf32 = self.precision == "tf32"

        def in_precision(*args, **kwargs):
            set_float32_compute_type(tf32)
            return fn(*args, **kwargs)
        return in_precision

    def from_host(self, tensor, dtype):
        with self.device:
            return xp.asarray(host_array(tensor), dtype=self.dtype(dtype))

    def to_host(self, x):
        return x.get()

    def synchronize(self, *arrays):
        self.device.synchronize()

    def memory_in_use(self):
        return cupy.get_default_memory_pool().used_bytes()

    def device_key(self):
        return f"gpu:{self.device.id}"

    def device_name(self):
        props = cupy.cuda.runtime.getDeviceProperties(self.device.id)
        return f"gpu:{self.device.id} ({props['name'].decode()})"


def set_float32_compute_type(tf32: bool) -> None:
    """What the CUPY_TF32 environment variable sets, per call (CuPy reads the variable only once)."""
    from cupy._core import _routines_linalg as linalg
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if tf32 else linalg.COMPUTE_TYPE_DEFAULT)


def create(device: str | None = None, precision: str = "float32", **options) -> CupyBackend:
    return CupyBackend(device, precision)
