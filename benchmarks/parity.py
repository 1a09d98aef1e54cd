"""Parity: every backend x dtype against a NumPy float64 reference of the same forward pass.

Per cell: max abs and relative logit difference (relative to the reference's largest |logit|, so
the tolerance follows the logits' magnitude), greedy-token agreement over N generated tokens, and
cached vs uncached greedy decode on the backend itself.

The uncached side is one forward pass over prompt + generated tokens (all but the last): by causality,
its logits at each position are what a full recomputation at that step would give, so each cached
token must be the argmax one position earlier, and its first P positions are the prompt's logits
compared with the reference. A compiling backend (JAX) compiles that forward once per cell, where
recomputing step by step compiled a new shape for every token.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from arraygpt.backends import BackendError, get_backend
from arraygpt.engine import GenerationError, load_model

from .records.labels import numerics_label

# Largest allowed max|logits - reference| / max|reference|. float32 lands near 1e-6 on CPU; 1e-4
# leaves room for reduction order on GPUs but still catches TF32 (about 1e-3). Half precision sits
# near a few times its machine epsilon (float16 9.8e-4, bfloat16 7.8e-3; measured on 124M: 1.9e-3
# and 1.4e-2).
TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "bfloat16": 6e-2,
             # TF32 rounds the products' inputs to a 10-bit mantissa (float16's) and accumulates in
             # float32: 4.7e-4 to 1.0e-3 measured (NOTES.md, "TF32 error").
             "float32+tf32": 1e-2,
             # Mixed precision (float32 arithmetic, matrices stored narrower), measured on 124M: bfloat16
             # weights 7.9e-3 (torch) and 8.4e-3 (jax), float16 weights 1.1e-3 (torch, numpy).
             "float32+bfloat16-weights": 3e-2, "float32+float16-weights": 5e-3,
             # llama.cpp's Q8_0 (8-bit weights in blocks of 32 with a float16 scale): 1.5e-2 on tiny and
             # 2.4e-2 on 124M (ad hoc prompt), 2.6e-2 in the committed quick runs of 2026-12-03: as bfloat16's
             "float32+q8_0-weights": 6e-2}
# Greedy tokens must agree exactly where the arithmetic is precise enough to break near-ties the
# same way; in half precision random weights leave near-ties, so agreement there is reported only.
EXACT_TOKENS = {"float64", "float32"}


def logit_difference(got, expected) -> tuple[float, float]:
    """(max |got - expected|, that over the reference's largest |logit|): parity's one measure of logits, for
    `arraygpt parity`'s cells and the bench's rows alike (the tolerance follows the logits' magnitude)."""
    max_abs = float(np.abs(got - expected).max())
    return max_abs, max_abs / float(np.abs(expected).max())


@dataclasses.dataclass
class ParityCell:
    backend: str
    device: str
    dtype: str
    status: str                  # "pass", "fail", "skipped"
    reason: str = ""
    max_abs: float = math.nan
    relative: float = math.nan
    tolerance: float = math.nan
    greedy_agreement: float = math.nan    # leading greedy tokens equal to the reference, as a fraction (the
    # bench's token_agreement is another figure: the argmax at each prompt position, records.Derived)
    cached_vs_uncached: float = math.nan  # the same fraction, cached decode vs full recomputation

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(self).items()}


def leading_agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Fraction of tokens, over all rows, that agree before each row's first difference."""
    same = sum(sum(1 for _ in itertools.takewhile(lambda p: p[0] == p[1], zip(x, y))) for x, y in zip(a, b))
    return same / sum(len(x) for x in a)


def cached_vs_uncached(model, prompts, cached) -> tuple[float, object]:
    """One uncached forward over each prompt + its cached tokens but the last: (the fraction of cached
    tokens, leading, that are the argmax one position earlier; the logits of the prompt positions)."""
    rows = [list(p) + list(c[:-1]) for p, c in zip(prompts, cached)]
    logits = np.asarray(model.backend.to_host(model.logits(rows)), dtype=np.float64)  # [B, P + N - 1, V]
    start = len(prompts[0]) - 1
    predicted = logits[:, start:, :].argmax(axis=-1).tolist()  # [B, N]
    return leading_agreement(cached, predicted), logits[:, :len(prompts[0]), :]


def parity_backend(name: str, device: str | None, precision: str = "float32", mesh: str | None = None):
    return get_backend(name, device=device, precision=precision, mesh=mesh)


def run_parity(model_spec, backends, dtypes, *, precision="float32", weights=None, mesh=None, batch=2, prompt_len=16,
               new_tokens=16, seed=0, on_cell=None, on_progress=None) -> tuple[dict, list[ParityCell]]:
    """Every backend x dtype cell against NumPy float64. on_progress(text) hears each step of each cell;
    on_cell(cell) each finished cell."""
    progress = on_progress or (lambda text: None)
    rng = np.random.default_rng(seed)
    progress("loading the float64 reference")
    reference = load_model(model_spec, backend="numpy", dtype="float64")
    prompts = rng.integers(0, reference.config.vocab_size, size=(batch, prompt_len)).tolist()
    expected_logits = np.asarray(reference.logits(prompts))
    expected_tokens = reference.generate(prompts, max_new_tokens=new_tokens)
    scale = float(np.abs(expected_logits).max())
    cells = []
    grid = list(itertools.product(backends, dtypes))
    for index, ((name, device), dtype) in enumerate(grid, start=1):
        where = f"[{index}/{len(grid)}] {name}{':' + device if device else ''} {dtype}"
        numerics = numerics_label(dtype, precision, weights)
        cell = ParityCell(name, device or "default", numerics, "skipped", tolerance=TOLERANCE.get(numerics, math.nan))
        try:
            progress(f"{where}: loading")
            backend = parity_backend(name, device, precision, mesh)
            cell.device = backend.device_name()
            if numerics not in TOLERANCE:
                raise BackendError(f"{numerics} has no parity tolerance (tf32 is a mode of float32 products; "
                                   "mixed weights are bfloat16 or float16 under float32)")
            model = load_model(model_spec, backend=backend, dtype=dtype, weights=weights)
        except (BackendError, GenerationError) as err:
            cell.reason = str(err)
        else:
            progress(f"{where}: cached greedy decode")
            cached = model.generate(prompts, max_new_tokens=new_tokens)
            cell.greedy_agreement = leading_agreement(cached, expected_tokens)
            progress(f"{where}: one uncached forward")
            cell.cached_vs_uncached, got = cached_vs_uncached(model, prompts, cached)
            cell.max_abs, cell.relative = logit_difference(got, expected_logits)
            failures = []
            if not cell.relative <= cell.tolerance:  # NaN fails too
                failures.append(f"logits off by {cell.relative:.1e} of max|logit| > {cell.tolerance:.0e}")
            exact = numerics in EXACT_TOKENS  # float32 and float64 with nothing narrower in the products
            if exact and cell.greedy_agreement < 1:
                failures.append(f"greedy tokens differ from the reference ({cell.greedy_agreement:.0%} agree)")
            if exact and cell.cached_vs_uncached < 1:
                failures.append(f"cached decode differs from full recomputation ({cell.cached_vs_uncached:.0%})")
            cell.status = "fail" if failures else "pass"
            cell.reason = "; ".join(failures)
        cells.append(cell)
        if on_cell is not None:
            on_cell(cell)
    setup = {"model": str(model_spec), "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens,
             "seed": seed, "precision": precision, "weights": weights, "mesh": mesh, "reference": "numpy float64",
             "max_abs_reference_logit": scale}
    return setup, cells
