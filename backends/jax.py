"""JAX on CPU, GPU or TPU: prefill and decode steps jitted, the KV cache donated to XLA.

With mesh="dp=2,tp=4" the same steps run over a device mesh: the adapter places every weight, input
and cache buffer split as engine/layout.py names its axes (backends/mesh.py maps them: batch over dp;
heads, MLP features and vocabulary over tp), and XLA's partitioner (GSPMD) compiles each step with the
collectives that layout needs (one all-reduce after each block's attention and MLP output products).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import subprocess
import sys

import numpy as np

from .base import ArrayBackend, BackendError, BackendUnavailable, check_precision, parse_device
from .host import host_array
from .mesh import AXES as MESH_AXES, LOGICAL, MeshSpec, check_fits, parse_mesh, split_bytes

import jax  # noqa: E402  (an ImportError here tells the registry that jax is missing)
import jax.numpy as jnp  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402


# arraygpt's precision -> jax.default_matmul_precision
MATMUL_PRECISION = {"float32": "highest", "tf32": "tensorfloat32"}


class WithPrecision:
    """A jitted function called and lowered under one matmul precision; the rest (_cache_size, ...) as is."""

    def __init__(self, jitted, matmul_precision: str):
        self.jitted, self.matmul_precision = jitted, matmul_precision

    def __call__(self, *args, **kwargs):
        with jax.default_matmul_precision(self.matmul_precision):
            return self.jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with jax.default_matmul_precision(self.matmul_precision):
            return self.jitted.lower(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.jitted, name)


PROBE = ("import jax, jax.numpy as jnp; "  # the device client, a transfer and a compiled product: what aborts first
         "jax.jit(lambda x: x @ x)(jax.device_put(jnp.ones((64, 64)))).block_until_ready()")
M_ARENA_MAX, ARENAS = -8, 2  # glibc's mallopt parameter, and the arenas allowed under an address-space limit
HEADROOM = 256 * 2**20


@functools.cache
def start_under_memory_limit() -> None:
    """Make JAX start under an address-space limit (ulimit -v), or say in one line that it cannot.

    glibc gives each new thread a malloc arena that reserves 64 MB of address space; XLA's CPU client
    starts a pool of threads, and under a limit of ~1.5 GB one reservation fails: C++'s std::bad_alloc
    becomes abort() (measured on the 2-core Zen 5: aborts at 1.0 and 1.5 GB, starts at 1.0 GB with two
    arenas). So under a limit the arenas are capped (mallopt, as MALLOC_ARENA_MAX does), and a child process
    with the same limit starts JAX first: an abort there is an error here, where it can be said. Without a
    limit (the usual case) this does nothing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to cap
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, ARENAS)
    try:
        # The probe gets HEADROOM less than this process: what this one maps later (weights) is not in it.
        child = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                               env=os.environ | {"MALLOC_ARENA_MAX": str(ARENAS)},
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (max(soft - HEADROOM, 0), hard)))
    except (OSError, subprocess.TimeoutExpired):
        return  # the probe itself could not run: let JAX try
    if child.returncode != 0:  # aborted, or failed before it could (a MemoryError at import)
        lines = [line.strip() for line in child.stderr.splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if "Error" in line or "what()" in line), lines[-1] if lines else
                    f"exit status {child.returncode}")
        raise BackendError(f"backend 'jax' cannot start under this process's address-space limit (ulimit -v "
                           f"{soft / 2**30:.2f} GiB): a JAX process given {HEADROOM >> 20} MiB less failed to start ({said[:100]}); raise "
                           "the limit or choose another backend (--backend numpy)")


class JaxBackend(ArrayBackend):
    name = "jax"
    xp = jnp
    compiles = True

    def __init__(self, device: str | None = None, precision: str = "float32", compile_loop: bool = False,
                 mesh: "str | MeshSpec | None" = None):
        kind, index = parse_device(device)
        start_under_memory_limit()
        try:
            devices = jax.devices(kind) if kind else jax.devices()
        except RuntimeError:
            present = sorted({d.platform for d in jax.devices()})
            raise BackendUnavailable("jax", f"JAX has no {kind} device here (it has: {', '.join(present)})",
                                     "for NVIDIA GPUs: pip install 'jax[cuda12]'; for TPUs: pip install 'jax[tpu]'") from None
        if index >= len(devices):
            raise BackendUnavailable("jax", f"JAX has {len(devices)} {kind} device(s); there is no {device}")
        self.mesh_spec = parse_mesh(mesh) if isinstance(mesh, str) else mesh
        self.mesh = None
        if self.mesh_spec is None:
            self.device = devices[index]
        else:
            # The first dp x tp devices of the platform (every process's, in a multi-process run), dp rows
            # of tp: the devices of one tensor-parallel group are neighbours (on a GPU node, NVLink peers).
            check_fits(self.mesh_spec, len(devices), devices[0].platform)
            grid = np.asarray(devices[:self.mesh_spec.size], dtype=object).reshape(self.mesh_spec.dp, self.mesh_spec.tp)
            self.mesh = Mesh(grid, MESH_AXES)
            self.device = NamedSharding(self.mesh, PartitionSpec())  # device= elsewhere: replicated
        platform = devices[0].platform
        # JAX's default float32 matmul precision is TF32-like on NVIDIA GPUs (and one bfloat16 pass on
        # TPUs): "highest" makes float32 mean IEEE float32 everywhere; tf32 is an opt-in on GPUs.
        self.precision = check_precision("jax", precision, tf32_here=platform == "gpu", where=platform)
        self.matmul_precision = MATMUL_PRECISION[self.precision]
        # compile_loop: the whole decode loop becomes one jitted lax.fori_loop (the 'jax-loop' backend):
        # no host round trip per token, at the cost of streaming (every token arrives at the end).
        self.compiles_loop = compile_loop
        if compile_loop:
            self.name = "jax-loop"

    # -- a device mesh: where each array lives ---------------------------------------------------------

    def multiple(self, axis: str) -> int:
        return 1 if self.mesh_spec is None else self.mesh_spec.ways(axis)

    def device_for(self, axes):
        """On a mesh, the NamedSharding that splits each logical axis over its mesh axis."""
        if self.mesh is None:
            return self.device
        return NamedSharding(self.mesh, PartitionSpec(*(LOGICAL[a] if a else None for a in axes)))

    def from_host(self, tensor, dtype: str, layout=None):
        """On a mesh, each device receives only its own shard, cut from the host array (in a
        multi-process run each process sends its own devices' shards): no device holds a full copy."""
        if self.mesh is None:
            return super().from_host(tensor, dtype, layout)
        host = host_array(tensor, layout).astype(np.dtype(self.dtype(dtype)), copy=False)
        sharding = self.device_for(layout.axes if layout is not None else (None,) * host.ndim)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        """jax.jit, traced and run under this backend's matmul precision (part of jit's cache key)."""
        jitted = jax.jit(fn, static_argnames=tuple(static_argnames), donate_argnames=tuple(donate_argnames))
        return WithPrecision(jitted, self.matmul_precision)

    @staticmethod
    def fori_loop(lower, upper, body, init):
        return jax.lax.fori_loop(lower, upper, body, init)

    def to_host(self, x):
        if not x.is_fully_addressable:  # split across processes: every process gathers the whole array
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    def synchronize(self, *arrays):
        if arrays:
            jax.block_until_ready(arrays)
        else:
            jax.effects_barrier()

    def memory_in_use(self):
        first = self.first_device
        stats = first.memory_stats() if hasattr(first, "memory_stats") else None
        return (stats or {}).get("bytes_in_use")

    @property
    def first_device(self):
        return self.device if self.mesh is None else self.mesh.devices.flat[0]

    @property
    def mesh_label(self):
        return None if self.mesh_spec is None else self.mesh_spec.label

    def first_device_bytes(self, arrays) -> int:
        """Read from the arrays' shards: what the first device of the mesh really holds."""
        first = self.first_device
        return sum(shard.data.nbytes for array in arrays for shard in array.addressable_shards
                   if shard.device == first)

    def shard_bytes(self, shape, axes, itemsize: int) -> int:
        if self.mesh_spec is None:
            return super().shard_bytes(shape, axes, itemsize)
        return split_bytes(shape, axes, self.mesh_spec, itemsize)

    def device_name(self):
        first = self.first_device
        if self.mesh is None:
            return f"{first.platform}:{first.id}"
        return f"{first.platform}:{first.id}-{self.mesh.devices.flat[-1].id} (mesh {self.mesh_spec.label})"

    def device_key(self):
        """The hardware of one device: a mesh's rows are measured per device, so its first device."""
        first = self.first_device
        return "cpu" if first.platform == "cpu" else f"{first.platform}:{first.id}"


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """Join a multi-process run (jax.distributed.initialize), from the arguments or the environment
    (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID). False when neither names a
    coordinator: a single process. Call before anything asks JAX for its devices."""
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        return False
    num_processes = num_processes or _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if num_processes is None or process_id is None:
        raise BackendError("a multi-process run needs the number of processes and this process's id: "
                           "--num-processes N --process-id I (or JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (RuntimeError, ValueError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BackendError(f"could not join the multi-process run at {coordinator} as process {process_id} of "
                           f"{num_processes}: {message[:200]}") from None
    return True


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BackendError(f"{name}={value!r} is not a non-negative integer")
    return int(value)


def create(device: str | None = None, **options) -> JaxBackend:
    return JaxBackend(device, **options)
