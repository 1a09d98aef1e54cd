"""The regression gate: is NEW slower than BASE, beyond a threshold, with confidence?

Per scenario the ratio of medians new/base of the scenario's headline metric (decode tokens/s, or
prefill tokens/s for single-token scenarios; higher is better) and a bootstrap confidence interval
of that ratio from the timed repeats. A scenario is "slower" only when the whole interval lies below
1 - threshold, "faster" when it lies above 1 + threshold, and "no change" otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.errors import ArrayGPTError


@dataclasses.dataclass
class Comparison:
    id: str
    metric: str
    base: float
    new: float
    ratio: float
    low: float
    high: float
    verdict: str  # "slower", "faster", "no change"

    def to_json(self):
        return dataclasses.asdict(self)


def headline_metric(result) -> str:
    return "decode_tps" if result["new_tokens"] > 1 else "prefill_tps"


def bootstrap_ratio(base, new, confidence=0.95, resamples=4000, seed=0) -> tuple[float, float]:
    """Percentile bootstrap of median(new) / median(base), resampling each side's repeats."""
    rng = np.random.default_rng(seed)
    base, new = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    b = np.median(rng.choice(base, size=(resamples, base.size)), axis=1)
    n = np.median(rng.choice(new, size=(resamples, new.size)), axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(n / b, [tail, 100 - tail])
    return float(low), float(high)


def machine_signature(doc) -> dict:
    machine = doc["environment"]["machine"]
    return {"cpu": machine.get("cpu"), "cores": machine.get("cores"),
            "gpus": [g.get("name") for g in machine.get("gpus", [])]}


def ok_results(doc) -> dict:
    return {r["id"]: r for r in doc.get("results", []) if r.get("status") == "ok"}


def compare(base_doc, new_doc, threshold=0.10, confidence=0.95, force=False):
    """Returns (comparisons, only in base, only in new). Refuses unlike machines or backends unless forced."""
    for name, doc in (("BASE", base_doc), ("NEW", new_doc)):
        if doc.get("kind") != "arraygpt-bench":
            raise ArrayGPTError(f"{name} is not an arraygpt bench result file")
    if not force:
        if machine_signature(base_doc) != machine_signature(new_doc):
            raise ArrayGPTError(f"the results come from different machines ({machine_signature(base_doc)} vs "
                                f"{machine_signature(new_doc)}); timings are not comparable (--force to compare anyway)")
        runners = [sorted({r["runner"] for r in ok_results(d).values()}) for d in (base_doc, new_doc)]
        if runners[0] != runners[1]:
            raise ArrayGPTError(f"the results ran different backends ({', '.join(runners[0])} vs "
                                f"{', '.join(runners[1])}) (--force to compare the common scenarios)")
    base, new = ok_results(base_doc), ok_results(new_doc)
    rows = []
    for sid in [s for s in base if s in new]:
        metric = headline_metric(base[sid])
        b = [r[metric] for r in base[sid]["repeats"] if metric in r]
        n = [r[metric] for r in new[sid]["repeats"] if metric in r]
        if not b or not n:
            continue
        ratio = float(np.median(n) / np.median(b))
        low, high = bootstrap_ratio(b, n, confidence)
        verdict = "slower" if high < 1 - threshold else "faster" if low > 1 + threshold else "no change"
        rows.append(Comparison(sid, metric, float(np.median(b)), float(np.median(n)), ratio, low, high, verdict))
    return rows, sorted(set(base) - set(new)), sorted(set(new) - set(base))
