"""What every adapter shares: errors, dtypes and precisions, devices, and the defaults of an eager library
(host-side NumPy work, checkpoint tensors and host random numbers, is backends/host.py)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from .host import HostRandom, host_array


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
    product = None         # x @ w.T as the engine computes it (engine.layers.times_transposed)
    compiled_products = ()  # (dtype, weights) pairs whose products `product` compiles at its first call
    matmul = None          # attention's a @ b as the engine computes it (`@`)
    layer_norm = rms_norm = gelu = silu = softmax = None  # the engine's (engine.layers.Primitives) unless the library has one kernel
    attention = None       # the prompt's attention as one fused kernel (torch's scaled_dot_product_attention)
    fused_linear = None    # a linear layer's product, bias and activation in one call (torch: oneDNN's post-ops)
    slow_dtypes: dict = {}  # dtype -> why it runs far slower here (the registry's declaration, set by get_backend)
    write_slot = None      # a recorded step's in-place cache write (engine.kv_cache.replace_slot's select if None)
    tied_head_copies = ()  # weight dtypes in which a tied embedding table is held twice: a second copy for the
                           # logits alone (Layout.product_only), in the adapter's product format (torch on the CPU)

    def products_for(self, dtype: str, weights: str) -> str:
        library = self.name.split("-")[0]  # a variant (jax-loop, torch-eager) binds its library's matmul
        return f"the engine's x @ w.T: {library}'s matmul in the weights' dtype"

    def dtype(self, name: str):
        if name not in DTYPE_NAMES:
            raise BackendError(f"unknown dtype '{name}' (choose from {', '.join(DTYPE_NAMES)})")
        dtype = getattr(self.xp, name, None)
        if dtype is None:
            have = [d for d in DTYPE_NAMES if getattr(self.xp, d, None) is not None]
            raise BackendError(f"backend '{self.name}' has no {name} (it has {', '.join(have)}); "
                               f"pick another dtype (--dtype, --weights) or a backend that has {name} (jax, torch)")
        return dtype

    def from_host(self, tensor, dtype: str, layout=None):
        return self.xp.asarray(host_array(tensor, layout), dtype=self.dtype(dtype), device=self.device)

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

    def record(self, fn, *, static_argnames=(), fixed_argnames=()):
        """What a recording backend captures once and replays (backends/recording.py); eagerly, fn itself."""
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
