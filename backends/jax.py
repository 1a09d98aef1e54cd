"""JAX on CPU, GPU or TPU: prefill and decode steps jitted, the KV cache donated to XLA."""

from __future__ import annotations

import numpy as np

from .base import ArrayBackend, BackendUnavailable, check_precision, parse_device

import jax  # noqa: E402  (an ImportError here tells the registry that jax is missing)
import jax.numpy as jnp  # noqa: E402


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


class JaxBackend(ArrayBackend):
    name = "jax"
    xp = jnp
    compiles = True

    def __init__(self, device: str | None = None, precision: str = "float32", compile_loop: bool = False):
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
        # JAX's default float32 matmul precision is TF32-like on NVIDIA GPUs (and one bfloat16 pass on
        # TPUs): "highest" makes float32 mean IEEE float32 everywhere; tf32 is an opt-in on GPUs.
        self.precision = check_precision("jax", precision, tf32_here=self.device.platform == "gpu",
                                         where=self.device.platform)
        self.matmul_precision = MATMUL_PRECISION[self.precision]
        # compile_loop: the whole decode loop becomes one jitted lax.fori_loop (the 'jax-loop' backend):
        # no host round trip per token, at the cost of streaming (every token arrives at the end).
        self.compiles_loop = compile_loop
        if compile_loop:
            self.name = "jax-loop"

    def compile(self, fn, *, static_argnames=(), donate_argnames=()):
        """jax.jit, traced and run under this backend's matmul precision (part of jit's cache key)."""
        jitted = jax.jit(fn, static_argnames=tuple(static_argnames), donate_argnames=tuple(donate_argnames))
        return WithPrecision(jitted, self.matmul_precision)

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

    def device_key(self):
        return "cpu" if self.device.platform == "cpu" else self.device_name()


def create(device: str | None = None, **options) -> JaxBackend:
    return JaxBackend(device, **options)
