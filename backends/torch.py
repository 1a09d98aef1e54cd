"""PyTorch (CPU or CUDA) through array_api_compat's torch namespace. No compilation of the step; on CUDA the
decode step is recorded once per shape bucket as a CUDA graph and replayed per token (torch_graphs.py; the
`torch-eager` variant, or record=False, runs it op by op; record=True on the CPU uses the graph's CPU stand-in);
on the CPU, the float32 matrices the products alone read are held packed for oneDNN's linear (a layer's bias and
GELU applied as the product is written: fused_linear), and other
one-row products with bfloat16, float16 (on CPUs where torch computes float16 in oneDNN) or float32 weights run a
compiled fused reduction (torch_products.py). LayerNorm,
GELU and softmax are torch's own kernels (torch_primitives.py)."""

from __future__ import annotations

import functools
import warnings

from .base import ArrayBackend, BackendUnavailable, check_precision, parse_device
from .host import host_array
from .torch_tf32 import set_cuda_tf32

import torch  # noqa: E402  (an ImportError here tells the registry that torch is missing)
from array_api_compat import torch as xp  # noqa: E402

from .recording import Recorder  # noqa: E402
from .torch_graphs import copy_into, graph_for, write_slot  # noqa: E402
from .torch_products import RowProduct, fused_linear, pack  # noqa: E402
from . import torch_primitives  # noqa: E402


class TorchBackend(ArrayBackend):
    name = "torch"
    xp = xp
    write_slot = staticmethod(write_slot)
    # one kernel each instead of the engine's 9, 8 and 5 operations (torch_primitives.py)
    layer_norm = staticmethod(torch_primitives.layer_norm)
    gelu = staticmethod(torch_primitives.gelu)
    rms_norm = staticmethod(torch_primitives.rms_norm)
    silu = staticmethod(torch_primitives.silu)
    softmax = staticmethod(torch_primitives.softmax)
    attention = staticmethod(torch_primitives.attention)  # the prompt's, without [B, H, T, T] scores in memory
    fused_linear = staticmethod(fused_linear)  # packed float32 weights: bias and GELU as post-ops

    def __init__(self, device: str | None = None, precision: str = "float32", record: bool | None = None,
                 inductor: bool = False):
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
        self.product = RowProduct() if self.device.type == "cpu" else None
        # Declared by the device, or by the option: None records on CUDA only.
        self.records_steps = self.device.type == "cuda" if record is None else bool(record)
        if record is False:
            self.name = "torch-eager"  # the registry's variant: its rows are told apart from the recorded ones
        # The second way to a recorded step (issue 26): Inductor compiles the step (its own kernels, fused; its
        # CUDA graphs off, the recording is ours), then it is recorded as before. The GPU check times both.
        self.inductor = bool(inductor)
        if self.inductor:
            if not self.records_steps:
                raise BackendUnavailable("torch", "the inductor variant compiles the step it records, and this torch "
                                         "backend records nothing here (it records on CUDA, or with record=True)",
                                         "use torch-inductor:gpu on an NVIDIA GPU, or torch on the CPU")
            self.name = "torch-inductor"
        # float32 matrices the products alone read, held packed for oneDNN's linear on the CPU (torch_products.py);
        # not where Inductor compiles the step (it traces no oneDNN-packed tensor)
        self.packs = self.device.type == "cpu" and not self.inductor and torch.backends.mkldnn.is_available()
        # and GPT-2's tied table a second time, packed, for the logits (+154 MB on 124M): ORT's graph holds it twice too
        self.tied_head_copies = ("float32",) if self.packs else ()
        # the numerics whose one-row products compile at the first call (none of float32's where its matrices are packed)
        self.compiled_products = tuple(("float32", str(w).removeprefix("torch.")) for w in self.product.row_weights
                                       if not (self.packs and w == torch.float32)) if self.product else ()

    def products_for(self, dtype: str, weights: str) -> str:
        engine = super().products_for(dtype, weights)
        if self.product is None:
            return engine
        return self.product.describe(dtype, weights, packed=self.packs and dtype == weights == "float32", engine=engine)

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        """Eager: fn itself, except on CUDA, where each call sets the float32 matmul mode (a process-wide
        switch of torch) to this backend's precision."""
        if self.device.type != "cuda":
            return fn
        tf32 = self.precision == "tf32"

        @functools.wraps(fn)
        def in_precision(*args, **kwargs):
            set_cuda_tf32(tf32)
            return fn(*args, **kwargs)
        return in_precision

    def record(self, fn, *, static_argnames=(), fixed_argnames=()):
        """fn captured once per shape (a CUDA graph on CUDA, the CPU stand-in on the CPU) and replayed; the
        precision is set at capture, where cuBLAS's math mode is recorded."""
        if not self.records_steps:
            return fn
        if self.inductor:
            # Dynamo traces through array_api_compat's cached namespace lookups (by type: safe) and says so
            warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
            # Inductor's default mode: fused kernels without autotuning. max-autotune-no-cudagraphs did not
            # finish compiling the 124M step within the H200 check's 90 s (NOTES, second GPU session).
            fn = functools.wraps(fn)(torch.compile(fn, dynamic=False))
        return Recorder(self.compile(fn), static_argnames=static_argnames, fixed_argnames=fixed_argnames,
                        make_graph=graph_for(self.device), clone=torch.clone, copy=copy_into)

    def from_host(self, tensor, dtype, layout=None):
        with warnings.catch_warnings():
            # A memory-mapped checkpoint is read-only; torch warns although we never write weights.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            array = torch.asarray(host_array(tensor, layout), device=self.device).to(self.dtype(dtype))
        if self.packs and layout is not None and layout.product_only and array.dtype == torch.float32:
            return pack(array)
        return array

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


def create(device: str | None = None, precision: str = "float32", record: bool | None = None,
           inductor: bool = False, **options) -> TorchBackend:
    return TorchBackend(device, precision, record, inductor)
