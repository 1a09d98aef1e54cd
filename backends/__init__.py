"""Backend adapters: one small module per array library, and the registry that picks one by name.

An adapter makes, moves, synchronizes and (where the library can) compiles arrays, and nothing else:
the model code lives in engine/ and is the same for every backend.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os

from .base import BackendError, BackendUnavailable


@dataclasses.dataclass(frozen=True)
class Registered:
    """A backend name: its adapter, how to install it, and what it can do, declared (never probed). The
    CLI and the bench ask these fields; nothing outside backends/ names an adapter module."""

    module: str                 # the adapter
    install: str                # how to get the library
    library: str                # the array library it binds ("jax", "torch", ...)
    options: tuple = ()         # (name, value) preset for a variant: jax-loop compiles the whole decode loop
    meshes: bool = False        # splits a model over a device mesh (--mesh)
    for_speed: bool = True      # in bench's default set ('strict' is for conformance; the -eager variants are
                                # the op-by-op GPU steps that the GPU check times beside the recorded ones)
    tf32: bool = False          # can compute float32 products in TF32 (on an NVIDIA GPU)
    dtypes: tuple = ("float32", "float16", "bfloat16", "float64")  # the library's dtypes (base.DTYPE_NAMES)
    slow_dtypes: tuple = ()     # (dtype, why and the measured cost): dtypes it runs far slower than float32


_JAX = "pip install 'arraygpt[jax]'"
_TORCH = "pip install 'arraygpt[torch]'"
_NO_BFLOAT16 = ("float32", "float16", "float64")
_CUPY = "pip install 'arraygpt[cuda12]' (or [cuda13]) on a machine with an NVIDIA GPU"
BACKENDS = {
    "numpy": Registered("arraygpt.backends.numpy", "included", "numpy", dtypes=_NO_BFLOAT16, slow_dtypes=(
        ("float16", "NumPy has no float16 matrix kernel (it converts element by element): 124M decodes at batch 1 "
                    "26x slower than in float32 (2.8 against 73.6 tok/s on a 2-core Zen 5, 2026-12-05); use float32, "
                    "or jax or torch for half-width weights"),)),
    "jax": Registered("arraygpt.backends.jax", _JAX, "jax", meshes=True, tf32=True),
    "jax-loop": Registered("arraygpt.backends.jax", _JAX, "jax", options=(("compile_loop", True),), meshes=True,
                           tf32=True),
    "torch": Registered("arraygpt.backends.torch", _TORCH, "torch", tf32=True),
    "torch-eager": Registered("arraygpt.backends.torch", _TORCH, "torch", options=(("record", False),), tf32=True,
                              for_speed=False),
    "torch-inductor": Registered("arraygpt.backends.torch", _TORCH, "torch", options=(("inductor", True),), tf32=True,
                                 for_speed=False),
    "cupy": Registered("arraygpt.backends.cupy", _CUPY, "cupy", tf32=True, dtypes=_NO_BFLOAT16),
    "cupy-eager": Registered("arraygpt.backends.cupy", _CUPY, "cupy", options=(("record", False),), tf32=True, for_speed=False,
                             dtypes=_NO_BFLOAT16),
    "strict": Registered("arraygpt.backends.strict", "pip install array-api-strict", "array-api-strict", for_speed=False,
                         dtypes=("float32", "float64")),
}
SPEED_BACKENDS = tuple(name for name, r in BACKENDS.items() if r.for_speed)


# What `--backend auto` tries, in order, by device and batch size. CPU order from the committed runs
# in benchmarks/results/ (2-core Xeon): numpy ties the jax backends at batch 1 with 2/3 of their
# memory; jax leads batched decode and prefill. auto offers only backends that stream token by token,
# so jax-loop is never chosen. GPU order is the design's expectation (jax compiles the whole step,
# cupy and torch dispatch kernel by kernel), not yet measured here: no GPU session had a machine.
AUTO_ORDER = {
    ("cpu", "single"): ("numpy", "jax", "torch"),
    ("cpu", "batched"): ("jax", "torch", "numpy"),
    ("gpu", "single"): ("jax", "cupy", "torch"),
    ("gpu", "batched"): ("jax", "cupy", "torch"),
}


def choose_auto(device: str | None = None, batch: int = 1, **options):
    """The first usable backend of AUTO_ORDER: a GPU one when there is a GPU (unless device='cpu')."""
    size = "single" if batch <= 1 else "batched"
    kinds = ("gpu", "cpu") if device is None else ("cpu",) if device == "cpu" else ("gpu",)
    tried = []
    for kind in kinds:
        for name in AUTO_ORDER[(kind, size)]:
            try:
                return get_backend(name, device=device or ("gpu" if kind == "gpu" else None), **options)
            except BackendError as err:
                tried.append(f"{name}: {err}")
    raise BackendUnavailable("auto", "no backend is usable for this device: " + "; ".join(tried))


def get_backend(name: str, device: str | None = None, **options):
    """The adapter for a library name, on a device ('cpu', 'gpu', 'gpu:1', 'tpu'; None = its default).

    options go to the adapter: precision="float32" (IEEE float32 products, the default) or "tf32"
    (NVIDIA GPUs: jax, torch, cupy); compile_loop=True for jax (what 'jax-loop' presets); mesh="dp=2,tp=4"
    for jax and jax-loop (the others refuse one)."""
    if name == "auto":
        return choose_auto(device, options.pop("batch", 1), **options)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}' (choose from auto, {', '.join(BACKENDS)})")
    registered = BACKENDS[name]
    hint = registered.install
    if options.get("mesh") is None:
        options.pop("mesh", None)
    elif not registered.meshes:
        meshing = ", ".join(n for n, r in BACKENDS.items() if r.meshes)
        raise BackendError(f"backend '{name}' runs on one device: a device mesh (--mesh) needs {meshing}")
    try:
        module = importlib.import_module(registered.module)
    except ModuleNotFoundError as err:
        raise BackendUnavailable(name, f"{err.name or err} is not installed", hint) from None
    except Exception as err:  # installed, but it failed to load (a broken install, no memory left to map it)
        first = str(err).strip().splitlines()[0] if str(err).strip() else "no message"
        raise BackendError(f"backend '{name}': {registered.library} is installed but failed to load "
                           f"({type(err).__name__}: {first})") from None
    try:
        backend = module.create(device, **{**dict(registered.options), **options})
    except BackendUnavailable as err:  # named as the user named it (a variant), with the adapter's hint if it has one
        raise BackendUnavailable(name, err.reason, err.hint or hint) from None
    backend.slow_dtypes = dict(registered.slow_dtypes)  # declared here once; the engine warns on load
    return backend


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """Join a multi-process JAX run when a coordinator is named (arguments or JAX_COORDINATOR_ADDRESS);
    False for a single process. See backends.jax.initialize_distributed."""
    address = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address:
        return False
    host, colon, port = address.rpartition(":")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise BackendError(f"the coordinator's address is HOST:PORT, such as 10.0.0.1:1234; got {address!r}")
    try:
        from .jax import initialize_distributed as initialize
    except ImportError:
        raise BackendUnavailable("jax", "a multi-process run needs jax, which is not installed",
                                 BACKENDS["jax"].install) from None
    return initialize(coordinator, num_processes, process_id)


def backend_status(names=tuple(BACKENDS)) -> list[tuple[str, bool, str]]:
    """(name, usable, what it runs on or why not) for each backend; never raises."""
    rows = []
    for name in names:
        try:
            backend = get_backend(name)
            rows.append((name, True, backend.device_name()))
        except BackendError as err:
            rows.append((name, False, str(err).split(": ", 1)[-1]))
        except Exception as err:  # a broken install should show in `arraygpt info`, not crash it
            rows.append((name, False, f"{type(err).__name__}: {err}"))
    return rows


def installed(name: str) -> bool:
    """Whether a registered backend's library is installed, without importing it (no device is touched: a
    GPU library imported in a parent process would take the GPU memory its workers need)."""
    module = BACKENDS[name].library.replace("-", "_")
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def usable_backends(names=SPEED_BACKENDS) -> list[str]:
    return [name for name, ok, _ in backend_status(names) if ok]


__all__ = ["Registered", "get_backend", "choose_auto", "backend_status", "usable_backends", "installed", "initialize_distributed", "BackendError",
           "BackendUnavailable", "BACKENDS", "SPEED_BACKENDS"]
