"""PyTorch (CPU or CUDA) through array_api_compat's torch namespace. Eager: no compilation of the step;
on the CPU, one-row products with bfloat16 weights run a compiled fused reduction (torch_products.py)."""

from __future__ import annotations

import warnings

from .base import ArrayBackend, BackendUnavailable, check_precision, parse_device
from .host import host_array
from .torch_tf32 import set_cuda_tf32

import torch  # noqa: E402  (an ImportError here tells the registry that torch is missing)
from array_api_compat import torch as xp  # noqa: E402

from .torch_products import BfloatRowProduct  # noqa: E402


class TorchBackend(ArrayBackend):
    name = "torch"
    xp = xp

    def __init__(self, device: str | None = None, precision: str = "float32"):
        kind, index = parse_device(device)
        if kind in (None, "cpu"):
            self.device = torch.device("cpu")
        elif kind == "gpu":
            if not torch.cuda.is_available():
                raise BackendUnavailable("torch", "PyTorch sees no CUDA GPU here (torch "
                                         f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'})",
                                         "install a CUDA build of torch on a machine with an NVIDIA GPU")
            if index >= torch.cuda.device_count():
                raise BackendUnavailable("torch", f"there is no CUDA device {index} "
                                         f"({torch.cuda.device_count()} present)")
            self.device = torch.device("cuda", index)
        else:
            raise BackendUnavailable("torch", f"arraygpt's torch adapter runs on cpu and gpu, not {kind}")
        self.precision = check_precision("torch", precision, tf32_here=self.device.type == "cuda",
                                         where=str(self.device))
        torch.set_grad_enabled(False)  # inference only: no autograd graph per op
        # CUDA keeps the engine's products: the reduction was measured on CPUs only.
        self.product = BfloatRowProduct() if self.device.type == "cpu" else None
        self.compiled_products = (("float32", "bfloat16"),) if self.product else ()

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        """Eager: fn itself, except on CUDA, where each call sets the float32 matmul mode (a process-wide
        switch of torch) to this backend's precision."""
        if self.device.type != "cuda":
            return fn
        tf32 = self.precision == "tf32"

        def in_precision(*args, **kwargs):
            set_cuda_tf32(tf32)
            return fn(*args, **kwargs)
        return in_precision

    def from_host(self, tensor, dtype, layout=None):
        with warnings.catch_warnings():
            # A memory-mapped checkpoint is read-only; torch warns although we never write weights.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.asarray(host_array(tensor, layout), device=self.device).to(self.dtype(dtype))

    def to_host(self, x):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # NumPy has no bfloat16

    def synchronize(self, *arrays):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def limit_threads(self, threads: int) -> None:
        super().limit_threads(threads)
        torch.set_num_threads(threads)  # torch's intra-op pool is its own

    def threads(self) -> int:
        return torch.get_num_threads()

    def memory_in_use(self):
        return torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else None

    def device_key(self):
        return f"gpu:{self.device.index or 0}" if self.device.type == "cuda" else "cpu"

    def device_name(self):
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return "cpu"


def create(device: str | None = None, precision: str = "float32", **options) -> TorchBackend:
    return TorchBackend(device, precision)
