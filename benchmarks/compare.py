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

from .jsonio import check_bench_file


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


def pooled_results(docs) -> dict:
    """Successful results by scenario id, with the repeats of every run of that side pooled."""
    pooled = {}
    for doc in docs:
        for r in doc.get("results", []):
            if r.get("status") == "ok":
                if r["id"] in pooled:
                    pooled[r["id"]] = pooled[r["id"]] | {"repeats": pooled[r["id"]]["repeats"] + r["repeats"]}
                else:
                    pooled[r["id"]] = r
    return pooled


def compare(base_docs, new_docs, threshold=0.10, confidence=0.95, force=False):
    """Returns (comparisons, only in base, only in new). Each side is one result file or several runs of
    the same commit, whose repeats are pooled: drift between runs then widens the interval instead of
    tripping the gate. Refuses unlike machines or backends unless forced."""
    base_docs = [base_docs] if isinstance(base_docs, dict) else list(base_docs)
    new_docs = [new_docs] if isinstance(new_docs, dict) else list(new_docs)
    for name, docs in (("BASE", base_docs), ("NEW", new_docs)):
        for doc in docs:
            check_bench_file(doc, f"a {name} file")
    if not force:
        signatures = [machine_signature(d) for d in base_docs + new_docs]
        if any(sig != signatures[0] for sig in signatures):
            other = next(sig for sig in signatures if sig != signatures[0])
            raise ArrayGPTError(f"the results come from different machines ({signatures[0]} vs {other}); "
                                "timings are not comparable (--force to compare anyway)")
        runners = [sorted({r["runner"] for r in pooled_results(d).values()}) for d in (base_docs, new_docs)]
        if runners[0] != runners[1]:
            raise ArrayGPTError(f"the results ran different backends ({', '.join(runners[0])} vs "
                                f"{', '.join(runners[1])}) (--force to compare the common scenarios)")
    base, new = pooled_results(base_docs), pooled_results(new_docs)
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
