"""array-api-strict: the conformance backend. If the engine runs here, it uses only the standard."""

from __future__ import annotations

import numpy as np

from .base import ArrayBackend, BackendError, check_precision

import array_api_strict  # noqa: E402  (an ImportError here tells the registry that it is missing)


class StrictBackend(ArrayBackend):
    name = "strict"

    def __init__(self, device=None):
        self.xp = array_api_strict
        info = array_api_strict.__array_namespace_info__()
        self._home = info.default_device()
        if device in (None, "cpu"):
            self.device = self._home
        else:
            try:
                self.device = array_api_strict.Device(device)
            except ValueError:
                raise BackendError(f"backend 'strict' has no device '{device}' (devices: "
                                   f"{', '.join(d._device for d in info.devices())})") from None

    def device_name(self):
        return self.device._device  # 'CPU_DEVICE', 'device1', ...

    def to_host(self, x):
        # Strict arrays refuse conversion to NumPy off the default device; bring them home first.
        return np.asarray(x.to_device(self._home))


def create(device: str | None = None, precision: str = "float32", **options) -> StrictBackend:
    check_precision("strict", precision, tf32_here=False, where="its devices")
    return StrictBackend(device)
