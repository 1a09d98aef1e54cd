"""Choosing the next token: greedy, temperature, top-k and top-p, in the standard only.

The standard has no random number generator, so the caller passes one host-drawn uniform per row, and a
draw from the same probabilities is the same on every backend: the probabilities are rounded down to whole
multiples of 2^-23 (on_grid) before any running sum, so every partial sum (at most 2) is exact in float32
and no library's order of summation (sequential, pairwise, a parallel scan) can move a boundary. Before,
a float32 running sum over 50,257 probabilities decided the token, and each library summed in its own
order: the same seed gave other tokens on torch and jax than on numpy. What the rounding costs: a token
below 2^-23 (1.2e-7) of its row's probability is never drawn, and each token loses under 2^-23.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from .errors import GenerationError
from .layers import softmax
from .namespace import array_namespace
from .prompts import plain_int


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Hashable, so a compiled step can take it as a static argument."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        # Python or NumPy numbers (np.float32(0.8), np.int64(40)) become plain ones: the step is compiled per value.
        object.__setattr__(self, "temperature", _real(self.temperature, "temperature"))
        object.__setattr__(self, "top_p", None if self.top_p is None else _real(self.top_p, "top_p"))
        if self.top_k is not None:
            try:
                object.__setattr__(self, "top_k", plain_int(self.top_k))
            except TypeError:
                raise GenerationError(f"top_k must be an integer >= 1, got {self.top_k!r}") from None
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise GenerationError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and self.top_k < 1:
            raise GenerationError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def _real(value, name) -> float:
    if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
        raise GenerationError(f"{name} must be a number, got {value!r}")
    return float(value)


def keep_top_k(logits, k):  # [B, V] -> [B, V], all but the k largest set to -inf
    xp = array_namespace(logits)
    if k >= logits.shape[-1]:
        return logits
    kth_largest = xp.sort(logits, axis=-1, descending=True)[:, k - 1:k]
    return xp.where(logits >= kth_largest, logits, -math.inf)


# Probabilities are rounded down to multiples of 2^-23: sums of such values up to 2 are exact in float32.
GRID = 2.0 ** 23


def on_grid(probs):  # [B, V] probabilities -> [B, V] rounded down to whole multiples of 1 / GRID
    xp = array_namespace(probs)
    return xp.floor(probs * GRID) / GRID  # scaling by a power of two is exact


def keep_top_p(probs, p):  # [B, V] -> [B, V], the smallest set of tokens with mass >= p kept, others 0
    xp = array_namespace(probs)
    ranked = xp.sort(probs, axis=-1, descending=True)
    mass_before = xp.cumulative_sum(ranked, axis=-1) - ranked
    kept = mass_before < p  # the most likely token always stays
    smallest_kept = xp.min(xp.where(kept, ranked, math.inf), axis=-1, keepdims=True)
    return xp.where(probs >= smallest_kept, probs, 0.0)


def draw(probs, uniforms):  # [B, V] (unnormalized) weights, [B] uniforms in [0, 1) -> [B] ids
    xp = array_namespace(probs)
    cdf = xp.cumulative_sum(probs, axis=-1)
    below = cdf < uniforms[:, None] * cdf[:, -1:]
    ids = xp.sum(xp.astype(below, xp.int32), axis=-1, dtype=xp.int32)
    last = probs.shape[-1] - 1
    return xp.where(ids > last, last, ids)


# The id sample() returns for a row whose logits hold NaN or infinity: never a real token, so the host
# loop, which reads every step's ids anyway, can report it instead of emitting a silent token 0.
NON_FINITE = -1


# 1/T is capped here: past it every logit but the row's largest is already -1e23 or less (greedy), and
# a float32 1/T must stay finite (1/1e-300 is inf, and 0 * inf is NaN).
_MAX_INVERSE_TEMPERATURE = 1e30


def tempered(logits, temperature):  # [B, V] finite logits -> [B, V] (logits - max) / T, each row's max 0
    """Temperature applied after taking away each row's max: every value is <= 0 and the max is exactly 0,
    so a tiny temperature (1e-40) leaves the likeliest tokens and sends the rest to -inf instead of
    overflowing to +inf (which once made every row NaN, and token 0)."""
    xp = array_namespace(logits)
    inverse = min(1.0 / temperature, _MAX_INVERSE_TEMPERATURE)
    return (logits - xp.max(logits, axis=-1, keepdims=True)) * inverse


def choose(logits, uniforms, sampling: Sampling):  # [B, V] float32 logits, [B] uniforms -> [B] int32 ids
    xp = array_namespace(logits)
    if sampling.greedy:
        return xp.astype(xp.argmax(logits, axis=-1), xp.int32)
    logits = tempered(logits, sampling.temperature)
    if sampling.top_k is not None:
        logits = keep_top_k(logits, sampling.top_k)
    probs = on_grid(softmax(logits))  # every running sum below is then exact, in any order
    if sampling.top_p is not None and sampling.top_p < 1:
        probs = keep_top_p(probs, sampling.top_p)
    return draw(probs, uniforms)


def sample(logits, uniforms, sampling: Sampling):  # [B, V] logits, [B] uniforms -> [B] int32 ids
    """The next id of every row, or NON_FINITE where the row's logits are not all finite.

    That one check covers what is sampled from: for finite logits, tempered() leaves each row's max at
    exactly 0 and every other value finite or -inf, so the softmax has a denominator >= 1 and finite
    probabilities, and top-k / top-p always keep the likeliest token (the row has mass)."""
    xp = array_namespace(logits)
    logits = xp.astype(logits, xp.float32)  # half-precision cumulative sums over 50k entries drift
    finite = xp.isfinite(xp.max(logits, axis=-1))  # NaN and +-inf all show in the row's max (or min)
    finite = finite & xp.isfinite(xp.min(logits, axis=-1))
    return xp.where(finite, choose(logits, uniforms, sampling), NON_FINITE)
