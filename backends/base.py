"""What every adapter shares: host-side conversion of checkpoint tensors and host random numbers."""

from __future__ import annotations

import numpy as np

from engine.errors import CheckpointError


class BackendError(Exception):
    """A backend or dtype the user asked for cannot be used; the message says why and what to do."""


class BackendUnavailable(BackendError):
    def __init__(self, name: str, reason: str, hint: str = ""):
        self.name, self.reason, self.hint = name, reason, hint
        super().__init__(f"backend '{name}' is not usable here: {reason}" + (f"; {hint}" if hint else ""))


DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")
# How float32 products are computed. "float32": IEEE float32 (every backend's default, on every device);
# "tf32": inputs rounded to TensorFloat-32 (10-bit mantissa) on NVIDIA tensor cores, float32 accumulation.
PRECISIONS = ("float32", "tf32")
TF32_HINT = ("--precision tf32 is for NVIDIA GPUs (Ampere or newer) with jax, torch or cupy on gpu; "
             "use the default --precision float32")


def check_precision(name: str, precision: str, tf32_here: bool, where: str) -> str:
    """The precision, if this backend on this device can honour it; otherwise a one-line BackendError."""
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision '{precision}' (choose from {', '.join(PRECISIONS)})")
    if precision == "tf32" and not tf32_here:
        raise BackendError(f"backend '{name}' on {where} has no tf32 products (its float32 products are IEEE "
                           f"float32); {TF32_HINT}")
    return precision


def host_array(tensor) -> np.ndarray:
    """A NumPy view of a checkpoint tensor (engine.checkpoint.HostTensor); no copy except for BF16
    and for a tensor marked transposed, reordered head-major or padded, which becomes a C-contiguous
    copy laid out as asked. Refuses a tensor holding NaN or infinity (CheckpointError naming it)."""
    data = np.asarray(tensor.data)
    if tensor.transposed:
        data = np.ascontiguousarray(data.T)
    if tensor.dtype == "BF16":  # bfloat16 is the top half of a float32
        data = (data.astype(np.uint32) << 16).view(np.float32)
    elif tensor.dtype == "F16":  # 16-bit patterns (memoryview casts to float16 only from Python 3.12)
        data = data.view(np.float16)
    check_finite(data, tensor.name)
    if tensor.heads is not None:  # dim 0 (q|k|v, head, D) -> (head, q|k|v, D)
        n_head, head_dim = tensor.heads
        rest = data.shape[1:]
        data = np.ascontiguousarray(data.reshape(3, n_head, head_dim, *rest).swapaxes(0, 1)).reshape(data.shape)
    if tensor.pad_to is not None:
        data = np.pad(data, [(0, want - have) for want, have in zip(tensor.pad_to, data.shape)])
    return data


def check_finite(data: np.ndarray, name: str) -> None:
    """NaN and +-inf show in the max or the min: two passes with no temporary array, ~10 ms per
    150 MB here (np.isfinite(data).all() took 13 ms and a bool array the tensor's size)."""
    if data.size and not (np.isfinite(data.max()) and np.isfinite(data.min())):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise CheckpointError(f"tensor {name} holds {bad} non-finite value(s) (NaN or infinity): the checkpoint is "
                              "corrupt or was saved after a diverged training step")


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
    precision = "float32"  # see PRECISIONS; an adapter that offers tf32 sets it from its options
    compiles = False
    compiles_loop = False  # True: the model runs its whole decode loop through fori_loop in one call
    records_steps = False  # True: the model replays record(recordable_step) per token (CUDA graphs)
    mesh_label = None      # 'dp=2,tp=4' for an adapter that split the model over a device mesh

    def dtype(self, name: str):
        if name not in DTYPE_NAMES:
            raise BackendError(f"unknown dtype '{name}' (choose from {', '.join(DTYPE_NAMES)})")
        dtype = getattr(self.xp, name, None)
        if dtype is None:
            have = [d for d in DTYPE_NAMES if getattr(self.xp, d, None) is not None]
            raise BackendError(f"backend '{self.name}' has no {name} (it has {', '.join(have)}); "
                               f"pick another dtype (--dtype, --weights) or a backend that has {name} (jax, torch)")
        return dtype

    def from_host(self, tensor, dtype: str, axes=None):
        return self.xp.asarray(host_array(tensor), dtype=self.dtype(dtype), device=self.device)

    def to_host(self, x) -> np.ndarray:
        return np.asarray(x)

    def multiple(self, axis: str) -> int:
        """How many ways a logical axis is split: one device, so never."""
        return 1

    def device_for(self, axes) -> object:
        """Where an array with these logical axes lives: on one device, this backend's."""
        return self.device

    def synchronize(self, *arrays) -> None:
        """Wait until the device has finished all work (or the work producing arrays)."""

    def memory_in_use(self) -> int | None:
        """Bytes the library holds on the device, where it can tell; None on the CPU."""
        return None

    def first_device_bytes(self, arrays) -> int:
        """One device holds every array whole."""
        return sum(int(a.nbytes) for a in arrays)

    def shard_bytes(self, shape, axes, itemsize: int) -> int:
        return int(np.prod(shape)) * itemsize

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        return fn

    def record(self, fn, *, static_argnames=()):
        """What a recording backend captures once and replays; eagerly, the function itself."""
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

    def limit_threads(self, threads: int) -> None:
        """Compute with at most `threads` CPU threads: the BLAS and OpenMP pools loaded in this process,
        through threadpoolctl (the worker has already pinned the process to that many cores)."""
        from threadpoolctl import threadpool_limits
        self._thread_limit = threadpool_limits(limits=threads)  # kept: the limit lasts while it lives

    def threads(self) -> int | None:
        """The library's own count of compute threads, where it has one."""
        return None

    def device_name(self) -> str:
        return str(self.device)

    def device_key(self) -> str:
        """The hardware, the same whatever the library: 'cpu', 'gpu:0', 'tpu:0'. Ceilings and peers
        are matched on it (every library's CPU device is the one machine)."""
        return "cpu"

    def __repr__(self):
        return f"<{self.name} backend on {self.device_name()}>"
