"""NumPy (CPU), through array_api_compat's namespace. Weights stay read-only views of the mapped file."""

from __future__ import annotations

import numpy as np
from array_api_compat import numpy as xp

from .base import ArrayBackend, BackendError


class NumpyBackend(ArrayBackend):
    name = "numpy"
    xp = xp
    device = "cpu"

    def dtype(self, name):
        if name == "bfloat16":
            raise BackendError("backend 'numpy' has no bfloat16 (it has float32, float16, float64); "
                               "use --dtype float32 or float16, or --backend jax/torch for bfloat16")
        return super().dtype(name)

    def from_host(self, tensor, dtype):
        # np.asarray keeps the memory-mapped view when the dtype already matches: no copy, no RSS.
        return np.asarray(super().from_host(tensor, dtype))

    def device_name(self):
        return "cpu"


def create(device: str | None = None, **options) -> NumpyBackend:
    if device not in (None, "cpu"):
        raise BackendError(f"backend 'numpy' runs on the cpu only, not '{device}'")
    return NumpyBackend()
