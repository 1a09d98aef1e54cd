"""What a caller may pass as prompts, token ids and seeds, checked before any backend sees them."""

from __future__ import annotations

import operator
from typing import Sequence

from .errors import GenerationError


def plain_int(value) -> int:
    """A plain int from Python and NumPy integers, anything operator.index takes; never a bool (TypeError)."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        raise TypeError("a bool is not an integer here")
    return operator.index(value)


as_token_id = plain_int  # a token id is a plain int


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
        seed = plain_int(seed)
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
            if new_tokens and positions_needed(1, new_tokens) > context:  # too many new tokens for any prompt
                raise GenerationError(f"{new_tokens} new tokens need {positions_needed(1, new_tokens)} positions or more "
                                      f"(all but the last new token), more than the model's context of {context}; ask "
                                      f"for at most {context - len(prompt) + 1} with this prompt")
            what = (f"{len(prompt)} prompt tokens + {new_tokens} new tokens need {needed} positions (all but the "
                    f"last new token)" if new_tokens else f"{len(prompt)} tokens")
            raise GenerationError(f"{which} is too long: {what}, which exceeds the model's context of {context} tokens")


def padded_batch(prompts: list[list[int]], multiple: int) -> list[list[int]]:
    """The prompts and, until the batch is a whole multiple, copies of the first: a data-parallel mesh
    splits the batch evenly. The copies' tokens are never returned."""
    return prompts + [prompts[0]] * (-len(prompts) % multiple)
