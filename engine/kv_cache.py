"""The key/value cache: preallocated once per generation, with static shapes.

Static shapes let a compiled decode step (JAX) be traced once for a batch size and cache length
instead of once per token. Slots are written in place with array_api_extra.at (a copy on JAX,
where the buffer is donated so XLA can reuse it).
"""

from __future__ import annotations

from .config import GPTConfig


def allocate_kv_cache(xp, config: GPTConfig, batch: int, n_slots: int, dtype, device) -> list[tuple]:
    """n_layer pairs of (keys, values), each [B, H, S_max, D] zeros."""
    shape = (batch, config.n_head, n_slots, config.head_dim)
    return [(xp.zeros(shape, dtype=dtype, device=device), xp.zeros(shape, dtype=dtype, device=device))
            for _ in range(config.n_layer)]
