"""What the engine needs from an array library that the standard does not give.

The engine is written against the array API standard only. Making arrays from host memory, moving
them back, synchronizing, compiling and drawing random numbers are not in the standard, so a backend
adapter (see backends/) supplies them through this protocol. The engine never imports backends/: it
finds the registry through the `arraygpt.backends` entry point, so the dependency points one way.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable, Protocol, Sequence

from .errors import ArrayGPTError


class HostRandom(Protocol):
    """Seeded random numbers drawn on the host, so a seed samples the same way on every backend."""

    def uniform(self, n: int) -> list[float]: ...

    def normal(self, shape: Sequence[int], std: float) -> Any:
        """A C-contiguous float32 host array (anything with the buffer protocol)."""


class Backend(Protocol):
    """Everything the engine and the bench ask of an adapter, by name; backends.base.ArrayBackend gives
    the defaults of an eager, single-device library, so an adapter states only where it differs."""

    name: str            # "numpy", "jax", ...
    xp: Any              # the array API namespace
    device: Any          # where arrays are made
    precision: str       # "float32" (IEEE products) or "tf32" (NVIDIA tensor cores)
    compiles: bool       # True when steps are compiled: shapes must then stay static
    compiles_loop: bool  # True: the whole decode loop runs through fori_loop in one compiled call
    records_steps: bool  # True: the decode step is recorded once (a CUDA graph) and replayed per token
    mesh_label: str | None  # 'dp=2,tp=4' when the model is split over a device mesh, else None
    # How x [N, n_in] @ w.T ([n_out, n_in] weights) -> [N, n_out] in x's dtype is computed, where the adapter
    # chooses (a library's faster kernel for some dtypes); None: the engine's gpt2.times_transposed.
    product: Callable | None
    compiled_products: tuple  # (dtype, weights) pairs, such as ("float32", "bfloat16"), whose products
    # `product` compiles at its first call (a first call then takes longer, as on a compiling backend)
    # How attention's a @ b ([..., M, K] @ [..., K, N]) is computed, where the adapter chooses (CuPy inside a
    # capture: cuBLAS through nvmath-python); None: `@`.
    matmul: Callable | None
    # LayerNorm (x, g, b, eps), RMSNorm (x, g, eps), GELU (GPT-2's tanh form), SiLU and softmax over the last
    # axis as one kernel of the library each, where it has one (engine.layers.Primitives); None: the engine's.
    layer_norm: Callable | None
    rms_norm: Callable | None
    gelu: Callable | None
    silu: Callable | None
    softmax: Callable | None
    # The prompt's causal attention without a cache, (q, k, v, mask, scale) -> out, as one fused kernel of the
    # library (torch: scaled_dot_product_attention); None: the engine's matmuls, mask and softmax.
    attention: Callable | None
    # A linear layer's product, bias and activation in one library call, (x, w, b, activation) -> out, or None
    # where the library has no kernel for those operands (torch on the CPU: oneDNN's post-ops on packed weights).
    fused_linear: Callable | None
    # Weight dtypes in which a tied embedding table is held a second time, laid out for the products alone
    # (Layout.product_only), for the logits (torch on the CPU: packed for oneDNN).
    tied_head_copies: tuple
    # How a recorded step writes one new (k, v) [B, H, 1, D] into the cache [B, H, S, D] at a 0-d slot on the
    # device, where the adapter writes in place (torch: index_copy_), so a recorded cache stays put and needs
    # no copy per step; None: engine.kv_cache.replace_slot, a select into a new array.
    write_slot: Callable | None
    # dtypes this library runs far slower than float32, each with why and the measured cost (the registry's
    # declaration): load_model warns, in one line, when a model is stored or computed in one of them.
    slow_dtypes: dict

    def dtype(self, name: str) -> Any:
        """The namespace's dtype for 'float32', 'float16', ...; raises if the library lacks it."""

    def products_for(self, dtype: str, weights: str) -> str:
        """How this adapter computes the weight products at these numerics, in words, as it declares them (the
        bench records it in each row: which kernel a speed figure comes from)."""

    def from_host(self, tensor: Any, dtype: str, layout: Any = None) -> Any:
        """A device array from a checkpoint tensor (engine.safetensors_io.HostTensor), laid out as the
        engine.layout.Layout says (None: as stored) and converted to dtype. The layout's axes name each
        dimension's logical axis; a backend with a device mesh places each device's shard only, one
        without ignores them."""

    def multiple(self, axis: str) -> int:
        """How many ways the backend splits a logical axis ('batch', 'heads', 'mlp', 'vocab'): 1
        without a device mesh. The engine pads that axis to a whole multiple."""

    def device_for(self, axes: Sequence[str | None]) -> Any:
        """The device= for making an array whose dimensions have these logical axes (the backend's
        device, or on a mesh how the array is split over it)."""

    def to_host(self, x: Any) -> Any:
        """A host (NumPy) copy of x; the engine calls only .tolist() on it."""

    def synchronize(self, *arrays) -> None:
        """Block until the device has finished the work (producing arrays); call before reading a clock."""

    def compile(self, fn: Callable, *, static_argnames: Sequence[str] = (),
                donate_argnames: Sequence[str] = ()) -> Callable: ...

    def record(self, fn: Callable, *, static_argnames: Sequence[str] = (),
               fixed_argnames: Sequence[str] = ()) -> Callable:
        """fn recorded once per shape and replayed on later calls (records_steps); else fn itself.
        fixed_argnames: arguments that are the same arrays at every call (the weights), used where they are;
        every other array is copied into the recording's own buffers, unless it is one of them already."""

    def fori_loop(self, lower: int, upper: int, body: Callable, init: Any) -> Any:
        """body(upper - 1, ... body(lower, init)); compiled into the surrounding step where compiles_loop."""

    def random(self, seed: int | None) -> HostRandom: ...

    # What the bench asks of an adapter (benchmarks/): names of the hardware and memory per device.

    def memory_in_use(self) -> int | None:
        """Bytes the library holds on the device, where it can tell; None on the CPU."""

    def device_name(self) -> str: ...

    def device_key(self) -> str:
        """The hardware, whatever the library: 'cpu', 'gpu:0' (ceilings and peers are matched on it)."""

    def first_device_bytes(self, arrays: Sequence[Any]) -> int:
        """Bytes of these arrays that the first device holds (all of them, without a mesh)."""

    def limit_threads(self, threads: int) -> None:
        """Compute with at most this many CPU threads, through the library's own controls."""

    def threads(self) -> int | None:
        """The library's own count of compute threads, where it has one."""

    def shard_bytes(self, shape: Sequence[int], axes: Sequence[str | None], itemsize: int) -> int:
        """Bytes one device holds of an array of this shape and logical axes."""


def resolve_backend(backend: "str | Backend", device: str | None = None) -> Backend:
    """A Backend object as given, or the registered one for a name such as 'numpy'."""
    if not isinstance(backend, str):
        return backend
    found = entry_points(group="arraygpt.backends", name="get_backend")
    if not found:
        raise ArrayGPTError("no backend registry found: install arraygpt (pip install -e .) "
                            "so that its 'arraygpt.backends' entry point exists")
    get_backend = next(iter(found)).load()
    return get_backend(backend, device=device)
