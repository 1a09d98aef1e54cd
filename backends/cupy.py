"""CuPy on an NVIDIA GPU: weights copied to the device once, results brought back with .get(). The decode step
is recorded once per shape bucket as a CUDA graph (a stream capture, its products on cuBLAS through
nvmath-python: cupy_graphs.py) and replayed per token; the `cupy-eager` variant (record=False) runs it op by op.
LayerNorm, GELU and softmax run as CuPy kernels of their own (cupy_primitives.py)."""

from __future__ import annotations

import functools

import numpy as np

from .base import ArrayBackend, BackendUnavailable, check_precision, parse_device
from .host import host_array
from .recording import Recorder

import cupy  # noqa: E402  (an ImportError here tells the registry that cupy is missing)
from array_api_compat import cupy as xp  # noqa: E402


from . import cupy_primitives  # noqa: E402


class CupyBackend(ArrayBackend):
    name = "cupy"
    xp = xp
    # float32/float16: GELU one kernel, LayerNorm and softmax three (cupy_primitives.py), the engine's 8, 9 and 5
    layer_norm = staticmethod(cupy_primitives.layer_norm)
    gelu = staticmethod(cupy_primitives.gelu)
    rms_norm = staticmethod(cupy_primitives.rms_norm)  # the Llama family: 2 kernels, and SiLU 1, never run yet
    silu = staticmethod(cupy_primitives.silu)
    softmax = staticmethod(cupy_primitives.softmax)

    def __init__(self, device: str | None = None, precision: str = "float32", record: bool = True):
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
        self._set_tf32 = float32_compute_type_setter()
        self.precision = check_precision("cupy", precision, tf32_here=major >= 8 and self._set_tf32 is not None,
                                         where=f"gpu:{index}")
        self.records_steps = bool(record)
        if self.records_steps:
            from . import cupy_graphs
            try:
                self._products = cupy_graphs.CublasProducts(tf32=self.precision == "tf32")
            except ImportError:
                raise BackendUnavailable("cupy", "recording CuPy's decode step needs nvmath-python (CuPy's own cuBLAS "
                                         "refuses a CUDA graph capture), which is not installed",
                                         "pip install 'arraygpt[cuda12]' (or [cuda13]), or use the backend cupy-eager"
                                         ) from None
            self.product, self.matmul = self._products.product, self._products.matmul
            self.write_slot = cupy_graphs.write_slot
        else:
            self.name = "cupy-eager"  # the registry's variant: its rows are told apart from the recorded ones

    def products_for(self, dtype: str, weights: str) -> str:
        if self.product is None:
            return super().products_for(dtype, weights)
        return "cuBLAS through nvmath-python's matmul (CuPy's own cuBLAS refuses a capture), in the weights' dtype"

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        """Eager: fn, with each call setting CuPy's float32 matmul compute type (process-wide) to this
        backend's precision: TF32 tensor cores, or cuBLAS's default IEEE float32."""
        if self._set_tf32 is None:  # this CuPy cannot switch: it stays at its default, IEEE float32
            return fn
        tf32 = self.precision == "tf32"

        @functools.wraps(fn)
        def in_precision(*args, **kwargs):
            self._set_tf32(tf32)
            return fn(*args, **kwargs)
        return in_precision

    def record(self, fn, *, static_argnames=(), fixed_argnames=()):
        """fn captured once per shape into a CUDA graph (cupy_graphs.CupyGraph) and replayed; the precision is
        set at capture."""
        if not self.records_steps:
            return fn
        from .cupy_graphs import CupyGraph, clone, copy_into  # nvmath-python: only a recording cupy needs it
        return Recorder(self.compile(fn), static_argnames=static_argnames, fixed_argnames=fixed_argnames,
                        make_graph=lambda: CupyGraph(self.device, self._products), clone=clone, copy=copy_into)

    def from_host(self, tensor, dtype, layout=None):
        with self.device:
            return xp.asarray(host_array(tensor, layout), dtype=self.dtype(dtype))

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


def float32_compute_type_setter():
    """A function(tf32: bool) doing per call what the CUPY_TF32 environment variable does once (CuPy reads
    it at its first float32 product), or None if this CuPy has no such switch. The enum values are those
    of CuPy's _routines_linalg.pxd (DEFAULT 1, TF32 7), which its own tests also spell as numbers."""
    try:
        from cupy._core import _routines_linalg as linalg
        set_compute_type = linalg.set_compute_type
    except (ImportError, AttributeError):
        return None
    tf32, default = getattr(linalg, "COMPUTE_TYPE_TF32", 7), getattr(linalg, "COMPUTE_TYPE_DEFAULT", 1)
    return lambda on: set_compute_type(np.float32, tf32 if on else default)


def create(device: str | None = None, precision: str = "float32", record: bool = True, **options) -> CupyBackend:
    return CupyBackend(device, precision, record)
