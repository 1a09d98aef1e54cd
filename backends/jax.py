"""JAX on CPU, GPU or TPU: prefill and decode steps jitted, the KV cache donated to XLA."""

from __future__ import annotations

import numpy as np

from .base import ArrayBackend, BackendUnavailable, parse_device

import jax  # noqa: E402  (an ImportError here tells the registry that jax is missing)
import jax.numpy as jnp  # noqa: E402


class JaxBackend(ArrayBackend):
    name = "jax"
    xp = jnp
    compiles = True

    def __init__(self, device: str | None = None, matmul_precision: str | None = None, compile_loop: bool = False):
        kind, index = parse_device(device)
        try:
            devices = jax.devices(kind) if kind else jax.devices()
        except RuntimeError:
            present = sorted({d.platform for d in jax.devices()})
            raise BackendUnavailable("jax", f"JAX has no {kind} device here (it has: {', '.join(present)})",
                                     "for NVIDIA GPUs: pip install 'jax[cuda12]'; for TPUs: pip install 'jax[tpu]'") from None
        if index >= len(devices):
            raise BackendUnavailable("jax", f"JAX has {len(devices)} {kind} device(s); there is no {device}")
        self.device = devices[index]
        # None keeps JAX's default, which may be TF32 for float32 on recent NVIDIA GPUs;
        # parity runs pass "highest" so float32 means float32.
        self.matmul_precision = matmul_precision
        # compile_loop: the whole decode loop becomes one jitted lax.fori_loop (the 'jax-loop' backend):
        # no host round trip per token, at the cost of streaming (every token arrives at the end).
        self.compiles_loop = compile_loop
        if compile_loop:
            self.name = "jax-loop"

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        jitted = jax.jit(fn, static_argnames=tuple(static_argnames), donate_argnames=tuple(donate_argnames))
        if self.matmul_precision is None:
            return jitted

        def with_precision(*args, **kwargs):
            with jax.default_matmul_precision(self.matmul_precision):
                return jitted(*args, **kwargs)
        with_precision.jitted = jitted
        return with_precision

    @staticmethod
    def fori_loop(lower, upper, body, init):
        return jax.lax.fori_loop(lower, upper, body, init)

    def to_host(self, x):
        return np.asarray(x)

    def synchronize(self, *arrays):
        if arrays:
            jax.block_until_ready(arrays)
        else:
            jax.effects_barrier()

    def memory_in_use(self):
        stats = self.device.memory_stats() if hasattr(self.device, "memory_stats") else None
        return (stats or {}).get("bytes_in_use")

    def device_name(self):
        return f"{self.device.platform}:{self.device.id}"


def create(device: str | None = None, **options) -> JaxBackend:
    return JaxBackend(device, **options)
