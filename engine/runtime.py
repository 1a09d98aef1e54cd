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
    name: str          # "numpy", "jax", ...
    xp: Any            # the array API namespace
    device: Any        # where arrays are made
    compiles: bool     # True when steps are compiled: shapes must then stay static

    def dtype(self, name: str) -> Any:
        """The namespace's dtype for 'float32', 'float16', ...; raises if the library lacks it."""

    def from_host(self, tensor: Any, dtype: str, axes: Sequence[str | None] | None = None) -> Any:
        """A device array from a checkpoint tensor (engine.checkpoint.HostTensor), converted to dtype.
        axes names each dimension's logical axis (engine/layout.py); a backend with a device mesh
        places each device's shard only, one without ignores them."""

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

    def random(self, seed: int | None) -> HostRandom: ...

    # Optional: a backend with records_steps = True also has
    #     record(fn, static_argnames) -> a callable that records fn once per shape (a CUDA graph) and
    #     replays it on later calls; the model then decodes with generate.recordable_step.
    # Optional: a backend with compiles_loop = True also has
    #     fori_loop(lower, upper, body, init) -> body(upper - 1, ... body(lower, init))
    # compiled into the surrounding step (jax.lax.fori_loop); the model then decodes in one call.


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
