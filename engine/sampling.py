"""Choosing the next token: greedy, temperature, top-k and top-p, in the standard only.

The standard has no random number generator, so the caller passes one host-drawn uniform per row;
the same seed therefore samples the same tokens on every backend.
"""

from __future__ import annotations

import dataclasses
import math

from .errors import GenerationError
from .gpt2 import softmax
from .namespace import array_namespace


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Hashable, so a compiled step can take it as a static argument."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise GenerationError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise GenerationError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        if self.top_p is not None and not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise GenerationError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def keep_top_k(logits, k):  # [B, V] -> [B, V], all but the k largest set to -inf
    xp = array_namespace(logits)
    if k >= logits.shape[-1]:
        return logits
    kth_largest = xp.sort(logits, axis=-1, descending=True)[:, k - 1:k]
    return xp.where(logits >= kth_largest, logits, -math.inf)


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


def choose(logits, uniforms, sampling: Sampling):  # [B, V] float32 logits, [B] uniforms -> [B] int32 ids
    xp = array_namespace(logits)
    if sampling.greedy:
        return xp.astype(xp.argmax(logits, axis=-1), xp.int32)
    logits = logits / sampling.temperature
    if sampling.top_k is not None:
        logits = keep_top_k(logits, sampling.top_k)
    probs = softmax(logits)
    if sampling.top_p is not None and sampling.top_p < 1:
        probs = keep_top_p(probs, sampling.top_p)
    return draw(probs, uniforms)


def sample(logits, uniforms, sampling: Sampling):  # [B, V] logits, [B] uniforms -> [B] int32 ids
    """The next id of every row, or NON_FINITE where the row's logits are not all finite."""
    xp = array_namespace(logits)
    logits = xp.astype(logits, xp.float32)  # half-precision cumulative sums over 50k entries drift
    finite = xp.isfinite(xp.max(logits, axis=-1))  # NaN and +-inf all show in the row's max (or min)
    finite = finite & xp.isfinite(xp.min(logits, axis=-1))
    return xp.where(finite, choose(logits, uniforms, sampling), NON_FINITE)
