"""The host loop of generation: pad -> prefill -> the model's decode strategy -> stop.

The steps are pure functions (engine/steps.py), the prompts are checked in engine/prompts.py, and how
the tokens after the first are made is the model's decoding strategy (engine/decoding.py), chosen once
from the backend's capabilities.
"""

from __future__ import annotations

from typing import Iterator

from .decoding import Job
from .errors import GenerationError
from .kv_cache import allocate_kv_cache
from .layout import BATCH, CACHE_AXES
from .prompts import check_prompts, check_seed, padded_batch
from .sampling import NON_FINITE, Sampling


def generate_tokens(model, prompts: list[list[int]], max_new_tokens: int, sampling: Sampling,
                    seed: int | None, stop_token: int | None) -> Iterator[list[int | None]]:
    """Check the request now, then yield at each step the new token of every prompt (None once a
    prompt has hit stop_token)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    seed = check_seed(seed)
    check_prompts(prompts, model.config.vocab_size, model.config.n_positions, max_new_tokens)
    return _generation_loop(model, prompts, max_new_tokens, sampling, seed, stop_token)


class HostDraws:
    """Uniforms drawn on the host for one step ([B]) or the next n steps ([n, B]), in the order the steps
    use them. Only the caller's rows draw, so a seed samples the same tokens however the batch is padded."""

    def __init__(self, backend, sampling: Sampling, seed: int | None, batch: int, rows: int):
        self.backend, self.batch, self.rows = backend, batch, rows
        self.rng = None if sampling.greedy else backend.random(seed)
        xp = backend.xp
        self.zeros = xp.zeros((rows,), dtype=xp.float32, device=backend.device_for((BATCH,)))

    def __call__(self, n_steps: int | None = None, room: int | None = None):
        """One step's [B] draws, or the next n_steps' [room, B] (rows past n_steps zero: a bucket's room)."""
        xp, backend, batch = self.backend.xp, self.backend, self.batch
        room = n_steps if room is None else room
        if self.rng is None:
            return self.zeros if n_steps is None else xp.zeros((room, self.rows), dtype=xp.float32,
                                                               device=backend.device_for((None, BATCH)))
        draws = self.rng.uniform(batch * (n_steps or 1))
        steps = [draws[i * batch:(i + 1) * batch] + [0.0] * (self.rows - batch) for i in range(n_steps or 1)]
        steps += [[0.0] * self.rows] * ((room or 1) - len(steps))
        if n_steps is None:
            return xp.asarray(steps[0], dtype=xp.float32, device=backend.device_for((BATCH,)))
        return xp.asarray(steps, dtype=xp.float32, device=backend.device_for((None, BATCH)))


def _generation_loop(model, prompts, max_new_tokens, sampling, seed, stop_token):
    config, backend = model.config, model.backend
    xp = backend.xp
    batch = len(prompts)  # the caller's rows; any more are padding
    rows = padded_batch(prompts, backend.multiple(BATCH))
    longest, steps = max(len(p) for p in rows), max_new_tokens - 1
    shape = model.call_shape(longest, max_new_tokens)  # a compiling backend's shape bucket
    pads = [shape.prompt_len - len(p) for p in rows]
    ids = xp.asarray([[0] * pad + list(p) for pad, p in zip(pads, rows)], dtype=xp.int32,
                     device=backend.device_for((BATCH, None)))
    job = Job(prompt_len=shape.prompt_len, n_slots=shape.n_slots, new_tokens=steps, loop_steps=shape.loop_steps,
              pad=xp.asarray(pads, dtype=xp.int32, device=backend.device_for((BATCH,))),
              sampling=sampling, uniforms=HostDraws(backend, sampling, seed, batch, len(rows)))
    cache = allocate_kv_cache(xp, config, len(rows), job.n_slots, model.dtype, backend.device_for(CACHE_AXES),
                              n_heads=model.n_heads)
    tokens, new_kv = model.prefill(model.params, ids, job.pad, job.uniforms(), sampling=sampling)
    cache = model.write_prefix(cache, new_kv, start=0)
    stop = _StopTracker(batch, stop_token)
    yield stop.mark(_finite(backend.to_host(tokens).tolist()[:batch], 0))
    if job.new_tokens == 0 or stop.all_stopped:
        return
    for step, row in enumerate(model.decoding.run(model.params, tokens, cache, job), start=1):
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
    """Which rows have produced a stop token; a stopped row reports None from then on. stop_token: one id, a
    collection of ids (a config that lists several), or None."""

    def __init__(self, batch: int, stop_token):
        self.stopped = [False] * batch
        self.stop_tokens = frozenset() if stop_token is None else frozenset(
            [stop_token] if isinstance(stop_token, int) else stop_token)

    def mark(self, tokens: list[int]) -> list[int | None]:
        out = []
        for row, token in enumerate(tokens):
            self.stopped[row] = self.stopped[row] or token in self.stop_tokens
            out.append(None if self.stopped[row] else token)
        return out

    @property
    def all_stopped(self) -> bool:
        return all(self.stopped)
