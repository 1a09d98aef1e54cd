"""The regression gate: is NEW slower than BASE, beyond a threshold, with confidence?

Per scenario the ratio of medians new/base of the scenario's headline metric (decode tokens/s, or
prefill tokens/s for single-token scenarios; higher is better) and a bootstrap confidence interval
of that ratio from the timed repeats. A scenario is "slower" only when the whole interval lies below
1 - threshold, "faster" when it lies above 1 + threshold, and "no change" otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from arraygpt.engine.errors import ArrayGPTError

from ..parity import TOLERANCE
from ..records import Result, Run, as_run
from ..runners import PEERS
from .derive import derive


@dataclasses.dataclass
class Comparison:
    id: str
    metric: str
    base: float
    new: float
    ratio: float
    low: float
    high: float
    verdict: str  # "slower", "faster", "no change", "too few repeats"
    repeats: tuple[int, int] = (0, 0)      # pooled repeats of base and new
    detectable: float | None = None        # the smallest change this interval could have called (a fraction)
    parity: tuple[float | None, float | None] = (None, None)  # base and new relative parity
    numerics: str = "ok"                   # "ok", "worse" (past the budget), "unknown" (no parity recorded)
    agreement: tuple[float | None, float | None] = (None, None)  # greedy tokens that match the reference's
    validity: tuple[str, str] = ("unmeasured", "unmeasured")      # each side's worst row validity

    def to_json(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NumericsBudget:
    """When a scenario's parity with the float64 reference counts as worse: above `factor` times the base's
    and above `floor` (changes under it are rounding), or above the numerics' parity tolerance."""

    factor: float = 2.0
    floor: float = 1e-5

    def worse(self, base: float | None, new: float | None, numerics: str, peer: bool = False) -> bool:
        """A peer is held to its own base only: its numerics are its own (llama.cpp's float32 GELU reads a
        float16 table), not our dtype's tolerance."""
        if new is None:
            return False
        if not peer and new > TOLERANCE.get(numerics, float("inf")):
            return True
        return base is not None and new > max(self.factor * base, self.floor)


def validity_of(results: list[Result]) -> str:
    """The worst validity among a side's runs of one scenario."""
    statuses = [r.validity.status if r.validity else "unmeasured" for r in results]
    return next((s for s in ("invalid", "unsteady", "unmeasured") if s in statuses), "valid")


def bootstrap_ratio(base, new, confidence=0.95, resamples=4000, seed=0) -> tuple[float, float]:
    """Percentile bootstrap of median(new) / median(base), resampling each side's repeats."""
    rng = np.random.default_rng(seed)
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    b = np.median(rng.choice(base, size=(resamples, base.size)), axis=1)
    n = np.median(rng.choice(new, size=(resamples, new.size)), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(n / b, [tail, 100 - tail])
    return float(low), float(high)


def machine_signatures(runs: list[Run]) -> list[dict]:
    """What must match for runs' timings to be compared: CPU name, cores, GPUs, and the CPU's family and model
    where every run recorded them (files written before 2026-12-06 did not; a gate against one keeps working)."""
    with_id = all(run.machine.get("cpu_id") for run in runs)
    return [{"cpu": run.machine.get("cpu"), "cores": run.machine.get("cores"),
             "gpus": [g.get("name") for g in run.machine.get("gpus", [])]}
            | ({"cpu_id": run.machine["cpu_id"]} if with_id else {}) for run in runs]


def pooled_results(runs: list[Run]) -> dict[str, list[Result]]:
    """Successful results by scenario id: every run of that side's (their repeats are pooled)."""
    pooled: dict[str, list[Result]] = {}
    for run in runs:
        for r in run.ok_results:
            pooled.setdefault(r.id, []).append(r)
    return pooled


def compare(base_docs, new_docs, threshold=0.10, confidence=0.95, force=False, min_repeats=3,
            budget: NumericsBudget = NumericsBudget()):
    """Returns (comparisons, only in base, only in new). Each side is one result file or several runs of
    the same commit, whose repeats are pooled: drift between runs then widens the interval instead of
    tripping the gate. Refuses unlike machines or backends unless forced."""
    sides = []
    for name, docs in (("BASE", base_docs), ("NEW", new_docs)):
        docs = [docs] if isinstance(docs, (dict, Run)) else list(docs)
        sides.append([derive(as_run(doc, f"a {name} file")) for doc in docs])  # parity_relative per result
    base_docs, new_docs = sides
    if not force:
        signatures = machine_signatures(base_docs + new_docs)
        if any(sig != signatures[0] for sig in signatures):
            other = next(sig for sig in signatures if sig != signatures[0])
            raise ArrayGPTError(f"the results come from different machines ({signatures[0]} vs {other}); "
                                "timings are not comparable (--force to compare anyway)")
        settings = [d.kernel_settings_line or "none" for d in base_docs + new_docs]
        if any(one != settings[0] for one in settings):
            other = next(one for one in settings if one != settings[0])
            raise ArrayGPTError(f"the results ran with different kernel settings ({settings[0]} vs {other}): "
                                "an instruction set capped or another library build; timings are not comparable "
                                "(--force to compare anyway)")
        runners = [sorted({rs[0].runner for rs in pooled_results(d).values()}) for d in (base_docs, new_docs)]
        if runners[0] != runners[1]:
            raise ArrayGPTError(f"the results ran different backends (BASE: {', '.join(runners[0]) or 'none that finished'}; "
                                f"NEW: {', '.join(runners[1]) or 'none that finished'}) (--force to compare the common "
                                "scenarios)")
    base, new = pooled_results(base_docs), pooled_results(new_docs)
    rows = []
    for sid in [s for s in base if s in new]:
        first, last = base[sid][0], new[sid][0]
        metric = first.headline_key
        b = [x for r in base[sid] for x in r.headline_values()]
        n = [x for r in new[sid] for x in r.headline_values()]
        if not b or not n:
            continue
        ratio = float(np.median(n) / np.median(b))
        low, high = bootstrap_ratio(b, n, confidence)
        verdict = "slower" if high < 1 - threshold else "faster" if low > 1 + threshold else "no change"
        if min(len(b), len(n)) < min_repeats:  # a point is not an interval: no verdict from it
            verdict = "too few repeats"
        # A change is called when the interval clears 1 -/+ threshold; this interval's half-width is how far
        # the ratio must move before that can happen.
        detectable = None if verdict == "too few repeats" else threshold + (high - low) / 2
        parity = (first.derived.parity_relative, last.derived.parity_relative)
        agreement = (first.derived.token_agreement, last.derived.token_agreement)
        # Worse numerics: parity past the budget, or fewer greedy tokens agreeing with the reference than before
        dropped = None not in agreement and agreement[1] < agreement[0]
        numerics = ("unknown" if parity[1] is None else
                    "worse" if dropped or budget.worse(parity[0], parity[1], last.numerics, peer=last.runner in PEERS)
                    else "ok")
        rows.append(Comparison(sid, metric, float(np.median(b)), float(np.median(n)), ratio, low, high, verdict,
                               (len(b), len(n)), detectable, parity, numerics, agreement,
                               (validity_of(base[sid]), validity_of(new[sid]))))
    return rows, sorted(set(base) - set(new)), sorted(set(new) - set(base))
