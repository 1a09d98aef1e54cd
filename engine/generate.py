"""Generation: prefill the prompts in one pass, then one token per step from the KV cache.

prefill_step, decode_step and kv_cache.write_kv are pure functions of arrays, so a backend may
compile them (jax.jit); generate_tokens is the host loop around them. The steps only read the cache
and return the new keys and values; the writer stores them (in place; donated under JAX). Prompts of
different lengths share a batch by left padding: every row's next token then lands in the same slot.
"""

from __future__ import annotations

import operator
from typing import Iterator, Sequence

import array_api_extra as xpx
from array_api_compat import device as device_of

from .errors import GenerationError
from .gpt2 import Hyper, attention_mask, cache_mask, gpt2, position_ids
from .kv_cache import allocate_kv_cache, select_kv, write_kv
from .layout import BATCH, CACHE_AXES
from .namespace import array_namespace
from .sampling import NON_FINITE, Sampling, sample


def prompt_forward(params, ids, pad, *, hp: Hyper, last_only=False):
    """[B, P] left-padded ids, no cache -> logits ([B, P, V], or [B, 1, V] with last_only) and each
    layer's (k, v) for slots [0, P)."""
    xp = array_namespace(ids)
    slots = xp.arange(ids.shape[1], dtype=xp.int32, device=device_of(ids))
    return gpt2(params, ids, position_ids(slots, pad), attention_mask(slots, ids.shape[1], pad), hp,
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
    logits, new_kv = gpt2(params, xp.expand_dims(tokens, axis=1), position_ids(slots, pad),
                          cache_mask(slots, n_slots, pad), hp, kv_cache=cache, last_only=True)
    return sample(logits[:, -1, :], uniforms, sampling), new_kv


def decode_loop(params, tokens, start, pad, cache, uniforms, *, fori_loop, n_slots, sampling, hp: Hyper):
    """[B] last ids at cache slot `start` -> [N, B] the next N ids (N = uniforms' rows), and the cache.

    The whole decode loop as one pure function, for a backend that compiles loops (jax.lax.fori_loop):
    each iteration is decode_step then kv_cache.write_kv, with no return to the host between tokens.
    uniforms is [N, B], one row per step, in the order the step-by-step loop draws them, so both
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

    _, cache, out = fori_loop(0, uniforms.shape[0], step, (tokens, cache, out))
    return out, cache


def recordable_step(params, tokens, slot, pad, cache, uniforms, *, n_slots, sampling, hp: Hyper):
    """One decode step that a backend can record once and replay per token (a CUDA graph): every input
    is an array already on the device (slot is a 0-d integer, uniforms this step's draws), the cache
    write is a select with no host-side index, shapes are static (n_slots: the whole cache), and it
    returns slot + 1 for the next replay. [B] ids at slot -> [B] next ids, the cache, the next slot."""
    tokens, new_kv = decode_step(params, tokens, slot, pad, cache, uniforms, n_slots=n_slots, sampling=sampling,
                                 hp=hp)
    return tokens, select_kv(cache, new_kv, slot), slot + 1


def full_forward(params, ids, *, hp: Hyper):
    """[B, T] ids -> [B, T, V] logits with no cache: the reference the cached path must match."""
    xp = array_namespace(ids)
    no_pad = xp.zeros((ids.shape[0],), dtype=xp.int32, device=device_of(ids))
    return prompt_forward(params, ids, no_pad, hp=hp)[0]


def as_token_id(value):
    """A token id as a plain int: Python and NumPy integers, anything operator.index takes; never a bool."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        raise TypeError("a bool is not a token id")
    return operator.index(value)


def _is_token_id(value) -> bool:
    try:
        as_token_id(value)
        return True
    except TypeError:
        return False


# Containers that are not sequences of ids though iterating them yields ints or keys: bytes (its byte
# values), text (characters), dicts (keys) and sets (no order).
_NOT_PROMPTS = (str, bytes, bytearray, memoryview, dict, set, frozenset)


def _refuse_non_sequence(value, what: str) -> None:
    if isinstance(value, _NOT_PROMPTS) or hasattr(value, "keys"):
        hint = " (encode text with a Tokenizer first)" if isinstance(value, (str, bytes, bytearray)) else ""
        raise GenerationError(f"{what} must be a sequence of token ids, got {type(value).__name__}{hint}")


def _as_row(row) -> list:
    """One prompt's ids as plain ints where they are integers; anything else stays for check_prompts to name."""
    if hasattr(row, "tolist") and hasattr(row, "shape"):  # an array of any library
        row = row.tolist()
    _refuse_non_sequence(row, "a prompt")
    try:
        items = list(row)
    except TypeError:
        raise GenerationError(f"a prompt must be a sequence of token ids, got {type(row).__name__}") from None
    return [as_token_id(t) if _is_token_id(t) else t for t in items]


def as_prompt_list(prompts) -> tuple[list[list[int]], bool]:
    """Accept one prompt (a sequence or 1-D array of ids) or several (a sequence of those, or a 2-D
    array); say which, so the caller can answer in kind. Ids become plain ints."""
    if hasattr(prompts, "tolist") and hasattr(prompts, "shape"):  # NumPy, JAX, torch, ... arrays
        prompts = prompts.tolist()
    _refuse_non_sequence(prompts, "prompts")
    try:
        prompts = list(prompts)
    except TypeError:
        raise GenerationError(f"prompts must be token ids (a list, or a list of lists), got "
                              f"{type(prompts).__name__}") from None
    if prompts and all(_is_token_id(p) for p in prompts):
        return [[as_token_id(p) for p in prompts]], True
    return [_as_row(p) for p in prompts], False


def check_seed(seed):
    """A sampling seed as a plain int >= 0 (Python or NumPy integers), or None."""
    if seed is None:
        return None
    try:
        if isinstance(seed, bool) or type(seed).__name__ == "bool_":
            raise TypeError
        seed = operator.index(seed)
    except TypeError:
        raise GenerationError(f"seed must be an integer >= 0 (or None), got {seed!r}") from None
    if seed < 0:
        raise GenerationError(f"seed must be an integer >= 0 (or None), got {seed!r}")
    return seed


def positions_needed(prompt_len: int, new_tokens: int) -> int:
    """Positions a generation uses: the prompt's and every new token's but the last (which is only
    produced, never fed back). A prompt of exactly n_positions tokens can still make one new token."""
    return prompt_len + max(new_tokens - 1, 0)


def check_prompts(prompts: Sequence[Sequence[int]], vocab_size: int, context: int, new_tokens: int = 0):
    """Reject what no backend should see: empty prompts, unknown ids, and too long for the context."""
    if not prompts:
        raise GenerationError("no prompt given")
    for i, prompt in enumerate(prompts):
        which = f"prompt {i}" if len(prompts) > 1 else "the prompt"
        if not prompt:
            raise GenerationError(f"{which} is empty: give at least one token")
        not_ids = [t for t in prompt if not isinstance(t, int) or isinstance(t, bool)]
        if not_ids:
            raise GenerationError(f"{which} has {not_ids[0]!r}, which is not a token id (an integer in "
                                  f"[0, {vocab_size}))")
        outside = [t for t in prompt if not 0 <= t < vocab_size]
        if outside:
            # Checked here because JAX would silently read a NaN row for an out-of-range id.
            raise GenerationError(f"{which} has token id {outside[0]} outside the vocabulary [0, {vocab_size})")
        needed = positions_needed(len(prompt), new_tokens)
        if needed > context:
            what = (f"{len(prompt)} prompt tokens + {new_tokens} new tokens need {needed} positions (all but the "
                    f"last new token)" if new_tokens else f"{len(prompt)} tokens")
            raise GenerationError(f"{which} is too long: {what}, which exceeds the model's context of {context} tokens")


def generate_tokens(model, prompts: list[list[int]], max_new_tokens: int, sampling: Sampling,
                    seed: int | None, stop_token: int | None) -> Iterator[list[int | None]]:
    """Check the request now, then yield at each step the new token of every prompt (None once a
    prompt has hit stop_token)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    seed = check_seed(seed)
    check_prompts(prompts, model.config.vocab_size, model.config.n_positions, max_new_tokens)
    return _generation_loop(model, prompts, max_new_tokens, sampling, seed, stop_token)


def padded_batch(prompts: list[list[int]], multiple: int) -> list[list[int]]:
    """The prompts and, until the batch is a whole multiple, copies of the first: a data-parallel mesh
    splits the batch evenly. The copies' tokens are never returned."""
    return prompts + [prompts[0]] * (-len(prompts) % multiple)


def _generation_loop(model, prompts, max_new_tokens, sampling, seed, stop_token):
    config, backend = model.config, model.backend
    xp = backend.xp
    batch = len(prompts)  # the caller's rows; any more are padding
    rows = padded_batch(prompts, backend.multiple(BATCH))
    prompt_len = max(len(p) for p in rows)
    n_slots = positions_needed(prompt_len, max_new_tokens)  # the last new token is never written
    pads = [prompt_len - len(p) for p in rows]
    by_row = backend.device_for((BATCH,))
    ids = xp.asarray([[0] * pad + list(p) for pad, p in zip(pads, rows)], dtype=xp.int32,
                     device=backend.device_for((BATCH, None)))
    pad = xp.asarray(pads, dtype=xp.int32, device=by_row)
    cache = allocate_kv_cache(xp, config, len(rows), n_slots, model.dtype, backend.device_for(CACHE_AXES),
                              n_heads=model.n_heads)
    rng = None if sampling.greedy else backend.random(seed)
    no_uniforms = xp.zeros((len(rows),), dtype=xp.float32, device=by_row)

    def uniforms(n_steps=None):
        """Host draws for one step ([B]) or the next n_steps ([n_steps, B]), in the order steps use them.
        Only the caller's rows draw, so a seed samples the same tokens however the batch is padded."""
        if rng is None:
            return no_uniforms if n_steps is None else xp.zeros((n_steps, len(rows)), dtype=xp.float32,
                                                                device=backend.device_for((None, BATCH)))
        draws = rng.uniform(batch * (n_steps or 1))
        steps = [draws[i * batch:(i + 1) * batch] + [0.0] * (len(rows) - batch) for i in range(n_steps or 1)]
        if n_steps is None:
            return xp.asarray(steps[0], dtype=xp.float32, device=by_row)
        return xp.asarray(steps, dtype=xp.float32, device=backend.device_for((None, BATCH)))

    def one_step_at_a_time(tokens, cache):
        for slot in range(prompt_len, n_slots):  # slot: where the last token's keys and values go
            # Eager backends read the written slots only; compiled ones keep one static shape.
            attended = n_slots if backend.compiles else slot
            tokens, new_kv = model.decode(model.params, tokens, slot, pad, cache, uniforms(),
                                          n_slots=attended, sampling=sampling)
            cache = model.write_slot(cache, new_kv, slot)
            yield backend.to_host(tokens).tolist()  # the only per-step transfer: B token ids

    def replayed(tokens, cache):
        """The backend's recorded step, replayed per token: the slot stays on the device."""
        slot = xp.asarray(prompt_len, dtype=xp.int32, device=backend.device_for(()))
        for _ in range(prompt_len, n_slots):
            tokens, cache, slot = model.record_step(model.params, tokens, slot, pad, cache, uniforms(),
                                                    n_slots=n_slots, sampling=sampling)
            yield backend.to_host(tokens).tolist()

    tokens, new_kv = model.prefill(model.params, ids, pad, uniforms(), sampling=sampling)
    cache = model.write_prefix(cache, new_kv, start=0)
    stop = _StopTracker(batch, stop_token)
    yield stop.mark(_finite(backend.to_host(tokens).tolist()[:batch], 0))
    if max_new_tokens == 1 or stop.all_stopped:
        return
    if model.record_step is not None:
        steps = replayed(tokens, cache)
    elif model.decode_loop is None:
        steps = one_step_at_a_time(tokens, cache)
    else:
        # One compiled call makes every remaining token; they reach the host together, and a stop
        # token ends its row's output, not the loop.
        new, _ = model.decode_loop(model.params, tokens, prompt_len, pad, cache, uniforms(max_new_tokens - 1),
                                   n_slots=n_slots, sampling=sampling)
        steps = backend.to_host(new).tolist()
    for step, row in enumerate(steps, start=1):
        yield stop.mark(_finite(row[:batch], step))
        if stop.all_stopped:
            return


def _finite(tokens: list[int], step: int) -> list[int]:
    """The step's ids, or an error naming the first row whose logits were NaN or infinite."""
    if NON_FINITE in tokens:
        row = tokens.index(NON_FINITE)
        which = f"prompt {row}" if len(tokens) > 1 else "the prompt"
        raise GenerationError(f"non-finite logits (NaN or infinity) for {which} at new token {step}: the weights "
                              "or the arithmetic overflowed (float16 has a range of +-65504); try --dtype float32")
    return tokens


class _StopTracker:
    """Which rows have produced stop_token; a stopped row reports None from then on."""

    def __init__(self, batch: int, stop_token: int | None):
        self.stopped, self.stop_token = [False] * batch, stop_token

    def mark(self, tokens: list[int]) -> list[int | None]:
        out = []
        for row, token in enumerate(tokens):
            self.stopped[row] = self.stopped[row] or token == self.stop_token
            out.append(None if self.stopped[row] else token)
        return out

    @property
    def all_stopped(self) -> bool:
        return all(self.stopped)
