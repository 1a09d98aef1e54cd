"""Shape buckets: the sizes a compiling backend traces, so that varied calls reuse a compilation.

A compiler (jax.jit) traces a function once per input shape. A prompt of 17 tokens, another of 19, a
generation of 100 new tokens and another of 120 would each compile the prefill, the decode step and the
decode loop again (seconds each for 124M on a CPU), a cost llama.cpp never pays. A compiling backend
instead runs each call at its bucket: prompts left-padded to the bucket of their length (left padding is
how a batch of mixed lengths runs already; the pad slots are masked), the KV cache sized to the bucket of
the slots the generation needs, and the compiled decode loop given room for the bucket of its steps while
its trip count is traced (a while loop that stops at the request's own count). An eager backend runs
every call at its exact shape: padding would be work for nothing there.

Buckets are powers of two up to 64 and multiples of 64 above: under twice the work below 129 tokens (a
prefill of 65 runs 128), under 50% more from 129 and falling, and 22 buckets up to GPT-2's 1024 positions.
"""

from __future__ import annotations

import dataclasses

from .prompts import positions_needed

STEP = 64


def bucket(n: int) -> int:
    """The smallest bucket >= n (n >= 1): 1, 2, 4, ..., 64, then 128, 192, 256, ..."""
    if n <= STEP:
        return 1 << (n - 1).bit_length()
    return -(-n // STEP) * STEP


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The shapes one generation runs at: prompt columns, KV cache slots, and decode loop rows (room for
    the compiled loop's steps; it runs only the steps asked for)."""

    prompt_len: int
    n_slots: int
    loop_steps: int

    @classmethod
    def exact(cls, prompt_len: int, decode_steps: int) -> "Bucket":
        """A call's own shapes: the prompt, its slots and every decode step's (the last new token is made,
        never written to the cache)."""
        return cls(prompt_len, positions_needed(prompt_len, decode_steps + 1), decode_steps)

    @classmethod
    def for_call(cls, prompt_len: int, decode_steps: int, context: int) -> "Bucket":
        """The bucket of a call: a prompt of prompt_len, decode_steps tokens after the prefill's, in a model
        of `context` positions (a bucket past the context is cut back to it, or to what the call needs)."""
        prompt = min(bucket(prompt_len), max(prompt_len, context))
        needed = positions_needed(prompt, decode_steps + 1)
        return cls(prompt, max(min(bucket(needed), context), needed), bucket(decode_steps) if decode_steps else 0)
