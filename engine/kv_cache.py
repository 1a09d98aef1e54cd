"""The key/value cache: preallocated once per generation, with static shapes, written in place.

Static shapes let a compiled decode step (JAX) be traced once for a batch size and cache length
instead of once per token. The forward pass only reads the cache; write_kv stores the new keys and
values as a separate step. In one compiled step that both reads and updates a donated buffer, XLA
copies the buffer twice (48 copies per 124M decode step); a step that only writes updates it in place.
benchmarks/results/NOTES.md (change 5) has the measurements. Inside the compiled decode loop
(steps.decode_loop) the write follows the reads in the same body, ordered by a data dependency.
"""

from __future__ import annotations

import array_api_extra as xpx
from array_api_compat import device as device_of

from .config import GPTConfig
from .namespace import array_namespace


def allocate_kv_cache(xp, config: GPTConfig, batch: int, n_slots: int, dtype, device,
                      n_heads: int | None = None) -> list[tuple]:
    """n_layer pairs of (keys, values), each [B, H, S_max, D] zeros. n_heads: the model's heads when a
    backend padded them to whole shards (engine/layout.py); device: where (or how split) they live."""
    shape = (batch, n_heads or config.n_head, n_slots, config.head_dim)
    return [(xp.zeros(shape, dtype=dtype, device=device), xp.zeros(shape, dtype=dtype, device=device))
            for _ in range(config.n_layer)]


def write_range(cache, new, start):  # [B, H, S_max, D], [B, H, T, D] -> [B, H, S_max, D]
    """Store new keys or values at slots [start, start + T). Keep the result: JAX arrays are immutable."""
    if new.shape[2] == 1:
        # A single slot is an integer index, which may be traced inside a compiled step; a slice may not.
        return xpx.at(cache, (slice(None), slice(None), start, slice(None))).set(new[:, :, 0, :])
    return xpx.at(cache, (slice(None), slice(None), slice(start, start + new.shape[2]), slice(None))).set(new)


def write_kv(cache, new_kv, start):
    """Every layer's new (k, v) [B, H, T, D] into the cache at slots [start, start + T)."""
    return [(write_range(k_cache, k, start), write_range(v_cache, v, start))
            for (k_cache, v_cache), (k, v) in zip(cache, new_kv)]


def replace_slot(cache, new, slot):  # [B, H, S_max, D], [B, H, 1, D], 0-d slot -> [B, H, S_max, D]
    """cache with slot `slot` replaced by new, where slot is an array on the device: a select over the
    slots, so no index has to reach the host (torch syncs to read a 0-d tensor used as an index)."""
    xp = array_namespace(cache)
    at_slot = xp.arange(cache.shape[2], dtype=slot.dtype, device=device_of(cache)) == slot  # [S_max]
    return xp.where(at_slot[:, None], new, cache)


def select_kv(cache, new_kv, slot, write_slot=replace_slot):
    """Every layer's one new (k, v) [B, H, 1, D] into the cache at a device-resident slot (write_slot: how;
    an adapter's in-place write returns the cache it wrote)."""
    return [(write_slot(k_cache, k, slot), write_slot(v_cache, v, slot))
            for (k_cache, v_cache), (k, v) in zip(cache, new_kv)]
