"""How the tokens after the first are made: one strategy per backend capability, chosen once when the
model is built, each with the same interface.

- StepByStep: a decode step per token from the host (every backend); the slot is a host integer.
- CompiledLoop: the whole loop in one compiled call (compiles_loop: jax-loop); no host round trip per
  token, so the tokens reach the host together at the end.
- Recorded: the decode step recorded once per shape bucket and replayed per token (records_steps: CUDA
  graphs, or backends/recording.HostGraph on the CPU); the slot stays on the device.

run(params, tokens, cache, job) yields each step's [B] ids as host lists; job holds the generation's
static shapes, its pad counts and its host draws (engine/generate.py).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterator

from .families import Hyper
from .kv_cache import replace_slot, write_kv
from .sampling import Sampling
from .steps import decode_loop, decode_step, recordable_step


@dataclasses.dataclass(frozen=True)
class Job:
    """One generation as the strategies see it."""

    prompt_len: int                  # the first decode slot (after the left-padded prompts)
    n_slots: int                     # the cache's slots: the last new token is never written
    new_tokens: int                  # tokens the strategy makes (all but the prefill's)
    loop_steps: int                  # the compiled loop's room (>= new_tokens: its shape bucket)
    pad: Any                         # [B] pad counts on the device
    sampling: Sampling
    uniforms: Callable[..., Any]     # uniforms() -> [B] draws for one step; uniforms(n) -> [n, B]


class StepByStep:
    streams = True

    def __init__(self, backend, hp: Hyper):
        self.backend = backend
        self.step = backend.compile(functools.partial(decode_step, hp=hp), static_argnames=("n_slots", "sampling"))
        self.write = backend.compile(functools.partial(write_kv), donate_argnames=("cache",))

    def run(self, params, tokens, cache, job: Job) -> Iterator[list[int]]:
        for slot in range(job.prompt_len, job.prompt_len + job.new_tokens):  # where the last token's k, v go
            # Eager backends read the written slots only; compiled ones keep one static shape.
            attended = job.n_slots if self.backend.compiles else slot
            tokens, new_kv = self.step(params, tokens, slot, job.pad, cache, job.uniforms(), n_slots=attended,
                                       sampling=job.sampling)
            cache = self.write(cache, new_kv, slot)
            yield self.backend.to_host(tokens).tolist()  # the only per-step transfer: B token ids


class CompiledLoop:
    streams = False  # every token after the first arrives at the end; a stop token ends its row's output

    def __init__(self, backend, hp: Hyper):
        self.backend = backend
        self.loop = backend.compile(functools.partial(decode_loop, fori_loop=backend.fori_loop, hp=hp),
                                    static_argnames=("n_slots", "sampling"), donate_argnames=("cache",))

    def run(self, params, tokens, cache, job: Job) -> Iterator[list[int]]:
        # The trip count is traced: one compilation serves every step count up to the bucket's room.
        new, _ = self.loop(params, tokens, job.prompt_len, job.pad, cache, job.uniforms(job.new_tokens, job.loop_steps),
                           job.new_tokens, n_slots=job.n_slots, sampling=job.sampling)
        yield from self.backend.to_host(new).tolist()[:job.new_tokens]


class Recorded:
    streams = True

    def __init__(self, backend, hp: Hyper):
        self.backend = backend
        step = functools.partial(recordable_step, hp=hp, write_slot=backend.write_slot or replace_slot)
        # One recording per shape bucket; the weights are used where they are, every other array is copied
        # into the recording's buffers (the cache once per generation, written in place after that).
        self.step = backend.record(step, static_argnames=("n_slots", "sampling"), fixed_argnames=("params",))

    def run(self, params, tokens, cache, job: Job) -> Iterator[list[int]]:
        xp = self.backend.xp
        slot = xp.asarray(job.prompt_len, dtype=xp.int32, device=self.backend.device_for(()))
        for _ in range(job.new_tokens):
            tokens, cache, slot = self.step(params, tokens, slot, job.pad, cache, job.uniforms(), n_slots=job.n_slots,
                                            sampling=job.sampling)
            yield self.backend.to_host(tokens).tolist()


def strategy_for(backend, hp: Hyper):
    """The backend's declared capability picks the strategy: recorded, compiled loop, or step by step."""
    if backend.records_steps:
        return Recorded(backend, hp)
    if backend.compiles_loop:
        return CompiledLoop(backend, hp)
    return StepByStep(backend, hp)
