"""The steps of generation as pure functions of arrays, so a backend may compile them (jax.jit) or
record them (a CUDA graph): prefill the prompts in one pass, then one token per step from the KV cache.

The steps only read the cache and return the new keys and values; kv_cache.write_kv stores them (in
place; donated under JAX). Prompts of different lengths share a batch by left padding: every row's next
token then lands in the same slot. hp (engine.families.Hyper) carries the model's forward pass and static numbers.
"""

from __future__ import annotations

import array_api_extra as xpx
from array_api_compat import device as device_of

from .attention import attention_mask, cache_mask, position_ids
from .families import Hyper
from .kv_cache import replace_slot, select_kv, write_kv
from .namespace import array_namespace
from .sampling import sample


def prompt_forward(params, ids, pad, *, hp: Hyper, last_only=False):
    """[B, P] left-padded ids, no cache -> logits ([B, P, V], or [B, 1, V] with last_only) and each
    layer's (k, v) for slots [0, P)."""
    xp = array_namespace(ids)
    slots = xp.arange(ids.shape[1], dtype=xp.int32, device=device_of(ids))
    return hp.forward(params, ids, position_ids(slots, pad), attention_mask(slots, ids.shape[1], pad), hp,
                      last_only=last_only)


def prefill_step(params, ids, pad, uniforms, *, sampling, hp: Hyper):
    """[B, P] left-padded prompt ids -> [B] first new ids, and each layer's (k, v) for slots [0, P)."""
    logits, new_kv = prompt_forward(params, ids, pad, hp=hp, last_only=True)
    return sample(logits[:, -1, :], uniforms, sampling), new_kv


def decode_step(params, tokens, slot, pad, cache, uniforms, *, n_slots, sampling, hp: Hyper):
    """[B] last ids at cache slot `slot` -> [B] next ids, and each layer's (k, v) for that slot.

    Reads cache slots [0, n_slots) (those before `slot` count); slot may be a traced integer (a
    compiled step is traced once); n_slots must be static.
    """
    xp = array_namespace(tokens)
    slots = xp.arange(1, dtype=xp.int32, device=device_of(tokens)) + slot
    logits, new_kv = hp.forward(params, xp.expand_dims(tokens, axis=1), position_ids(slots, pad),
                                cache_mask(slots, n_slots, pad), hp, kv_cache=cache, last_only=True)
    return sample(logits[:, -1, :], uniforms, sampling), new_kv


def decode_loop(params, tokens, start, pad, cache, uniforms, n_steps, *, fori_loop, n_slots, sampling, hp: Hyper):
    """[B] last ids at cache slot `start` -> [R, B] holding the next n_steps ids in its first rows (R =
    uniforms' rows, the room; the rest zeros), and the cache. n_steps may be traced (a compiler's loop
    then runs that many steps of one compiled body: a while loop).

    The whole decode loop as one pure function, for a backend that compiles loops (jax.lax.fori_loop):
    each iteration is decode_step then kv_cache.write_kv, with no return to the host between tokens.
    uniforms is [R, B], one row per step, in the order the step-by-step loop draws them, so both
    loops sample the same tokens.
    """
    xp = array_namespace(tokens)
    out = xp.zeros(uniforms.shape, dtype=tokens.dtype, device=device_of(tokens))

    def step(i, carry):
        tokens, cache, out = carry
        slot = start + i
        tokens, new_kv = decode_step(params, tokens, slot, pad, cache, uniforms[i, ...], n_slots=n_slots,
                                     sampling=sampling, hp=hp)
        write_at = slot
        if not isinstance(slot, int):  # traced by a compiler (an eager host loop runs in order anyway)
            # XLA updates a loop-carried buffer in place only if a data dependency orders the update
            # after every read of it; otherwise it copies each cache buffer twice per token (48 copies
            # for 124M). Token ids are never negative, so this is `slot`, known only after the reads.
            write_at = slot + xp.astype(xp.min(tokens) < 0, xp.int32)
        return tokens, write_kv(cache, new_kv, write_at), xpx.at(out, (i, ...)).set(tokens)

    _, cache, out = fori_loop(0, n_steps, step, (tokens, cache, out))
    return out, cache


def recordable_step(params, tokens, slot, pad, cache, uniforms, *, n_slots, sampling, hp: Hyper,
                    write_slot=replace_slot):
    """One decode step that a backend can record once and replay per token (a CUDA graph): every input
    is an array already on the device (slot is a 0-d integer, uniforms this step's draws), the cache
    write needs no host-side index (write_slot: the adapter's in-place write, or a select), shapes are
    static (n_slots: the whole cache), and it returns slot + 1 for the next replay. [B] ids at slot ->
    [B] next ids, the cache, the next slot."""
    tokens, new_kv = decode_step(params, tokens, slot, pad, cache, uniforms, n_slots=n_slots, sampling=sampling,
                                 hp=hp)
    return tokens, select_kv(cache, new_kv, slot, write_slot), slot + 1


def full_forward(params, ids, *, hp: Hyper):
    """[B, T] ids -> [B, T, V] logits with no cache: the reference the cached path must match."""
    xp = array_namespace(ids)
    no_pad = xp.zeros((ids.shape[0],), dtype=xp.int32, device=device_of(ids))
    return prompt_forward(params, ids, no_pad, hp=hp)[0]
