"""What every adapter shares: host-side conversion of checkpoint tensors and host random numbers."""

from __future__ import annotations

import numpy as np


class BackendError(Exception):
    """A backend or dtype the user asked for cannot be used; the message says why and what to do."""


class BackendUnavailable(BackendError):
    def __init__(self, name: str, reason: str, hint: str = ""):
        self.name, self.reason, self.hint = name, reason, hint
        super().__init__(f"backend '{name}' is not usable here: {reason}" + (f"; {hint}" if hint else ""))


DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


def host_array(tensor) -> np.ndarray:
    """A NumPy view of a checkpoint tensor (engine.checkpoint.HostTensor); no copy except for BF16
    and for a tensor marked transposed, which becomes a C-contiguous copy of its transpose."""
    data = np.asarray(tensor.data)
    if tensor.transposed:
        data = np.ascontiguousarray(data.T)
    if tensor.dtype == "BF16":  # bfloat16 is the top half of a float32
        return (data.astype(np.uint32) << 16).view(np.float32)
    return data


class HostRandom:
    """numpy.random.Generator(PCG64) behind the engine's HostRandom protocol."""

    def __init__(self, seed: int | None):
        self._generator = np.random.default_rng(seed)

    def uniform(self, n: int) -> list[float]:
        return self._generator.random(n).tolist()

    def normal(self, shape, std: float) -> np.ndarray:
        values = self._generator.standard_normal(tuple(shape), dtype=np.float32)
        values *= np.float32(std)
        return values


def parse_device(device: str | None) -> tuple[str | None, int]:
    """'gpu:1' -> ('gpu', 1); 'cpu' -> ('cpu', 0); None -> (None, 0)."""
    if device is None:
        return None, 0
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "gpu", "cuda", "tpu") or (index and not index.isdigit()):
        raise BackendError(f"unknown device '{device}' (use cpu, gpu, gpu:N or tpu)")
    return ("gpu" if kind == "cuda" else kind), int(index or 0)


class ArrayBackend:
    """Defaults for an eager library: no compilation, nothing to synchronize, host random numbers."""

    name: str
    xp = None
    device = None
    compiles = False
    compiles_loop = False  # True: the model runs its whole decode loop through fori_loop in one call

    def dtype(self, name: str):
        if name not in DTYPE_NAMES:
            raise BackendError(f"unknown dtype '{name}' (choose from {', '.join(DTYPE_NAMES)})")
        dtype = getattr(self.xp, name, None)
        if dtype is None:
            have = [d for d in DTYPE_NAMES if getattr(self.xp, d, None) is not None]
            raise BackendError(f"backend '{self.name}' has no {name} (it has {', '.join(have)}); "
                               f"pick another --dtype or a backend that has {name} (jax, torch)")
        return dtype

    def from_host(self, tensor, dtype: str):
        return self.xp.asarray(host_array(tensor), dtype=self.dtype(dtype), device=self.device)

    def to_host(self, x) -> np.ndarray:
        return np.asarray(x)

    def synchronize(self, *arrays) -> None:
        """Wait until the device has finished all work (or the work producing arrays)."""

    def memory_in_use(self) -> int | None:
        """Bytes the library holds on the device, where it can tell; None on the CPU."""
        return None

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        return fn

    @staticmethod
    def fori_loop(lower: int, upper: int, body, init):
        """The loop jax.lax.fori_loop compiles, run on the host: body(i, carry) -> carry."""
        carry = init
        for i in range(lower, upper):
            carry = body(i, carry)
        return carry

    def random(self, seed: int | None) -> HostRandom:
        return HostRandom(seed)

    def device_name(self) -> str:
        return str(self.device)

    def __repr__(self):
        return f"<{self.name} backend on {self.device_name()}>"
