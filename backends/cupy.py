"""CuPy on an NVIDIA GPU: weights copied to the device once, results brought back with .get()."""

from __future__ import annotations

from .base import ArrayBackend, BackendUnavailable, host_array, parse_device

import cupy  # noqa: E402  (an ImportError here tells the registry that cupy is missing)
from array_api_compat import cupy as xp  # noqa: E402


class CupyBackend(ArrayBackend):
    name = "cupy"
    xp = xp

    def __init__(self, device: str | None = None):
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

    def from_host(self, tensor, dtype):
        with self.device:
            return xp.asarray(host_array(tensor), dtype=self.dtype(dtype))

    def to_host(self, x):
        return x.get()

    def synchronize(self, *arrays):
        self.device.synchronize()

    def memory_in_use(self):
        return cupy.get_default_memory_pool().used_bytes()

    def device_name(self):
        props = cupy.cuda.runtime.getDeviceProperties(self.device.id)
        return f"gpu:{self.device.id} ({props['name'].decode()})"


def create(device: str | None = None, **options) -> CupyBackend:
    return CupyBackend(device)
