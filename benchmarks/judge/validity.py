"""Whether a bench run can be trusted on a shared machine: the judgement, from the records alone (what was
measured in the worker and the bench's own process is benchmarks/measure/load.py).

Three kinds of evidence, each recorded in the run's JSON as it is measured, and judged afterwards
(judge(), called by derive) against the suite's rules (`[validity]` in a suite file):

- what else ran while a scenario was timed (MachineLoad, in the worker around the timed repeats): cores
  busy with other processes, from /proc/stat less the worker's own CPU time, and the share of time the
  hypervisor stole (a noisy neighbour on a shared VM shows there and nowhere else);
- how the machine's speed drifted: a cheap probe (machine_probe, NumPy float32 matrix x vector over 256
  MiB and a 1024^3 product) before the suite, between runners and after it;
- the work behind a figure: at least `min_repeats` timed repeats and `min_seconds` of timed work
  (MLPerf-style minimums), and, with --target-ci, whether the headline's confidence interval got that narrow.

A scenario is `invalid` when it ran less than the minimums (its figure is not a measurement), `unsteady`
when the machine was disturbed or drifted while it ran, or its roofline is over 100% (the ceiling was taken
under other load), and `valid` otherwise. A run is valid when every scenario is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from arraygpt.engine.errors import ArrayGPTError

from ..records import Validity

# The rules a suite may set in [validity]; these defaults are what a run is judged by otherwise.
RULES = {
    "min_repeats": 3,         # timed repeats below this: invalid (a point is not a distribution)
    "min_seconds": 0.0,       # timed work below this many seconds: invalid
    "max_other_cores": 0.25,  # other processes busy on average more than this many cores: unsteady
    "max_steal": 0.10,        # the hypervisor stole more than this share of the CPUs' time: unsteady (a
                              # runner that lost 10% of its CPU may be 10% slow: compare's threshold)
    "max_drift": 0.25,        # the machine probe around the runner off the run's median by more: unsteady
                              # (10 back-to-back probes on a quiet 2-core VM spread 21.5-27.7 GB/s, 160-224 GFLOP/s)
}
STATUSES = ("valid", "unsteady", "invalid")


def check_rules(table, where: str) -> dict:
    """A suite's [validity] table: known fields, non-negative numbers (min_repeats a whole number)."""
    if not isinstance(table, dict):
        raise ArrayGPTError(f"{where}[validity] must be a table")
    unknown = set(table) - set(RULES)
    if unknown:
        raise ArrayGPTError(f"{where}[validity] has unknown field(s) {sorted(unknown)} (fields: {', '.join(RULES)})")
    for key, value in table.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not value >= 0 or (key == "min_repeats" and not isinstance(value, int)):
            raise ArrayGPTError(f"{where}[validity] {key} must be a {'whole ' if key == 'min_repeats' else ''}"
                                f"number >= 0, got {value!r}")
    return RULES | table


def drift_of(probes: list[dict]) -> dict:
    """The probes' medians and the bandwidth's range over the run."""
    if not probes:
        return {}
    medians = {k: float(np.median([p[k] for p in probes])) for k in ("bandwidth_bytes_s", "matmul_flops_s")}
    bandwidths = [p["bandwidth_bytes_s"] for p in probes]
    return {"median": medians, "bandwidth_range": (min(bandwidths), max(bandwidths))}


def worker_drift(probes: list[dict], label: str) -> float | None:
    """How far the machine's speed while a runner ran was from the run's median: the mean of the probes
    taken just before and just after each of its workers (one per round), each figure relative to the
    median of all probes; the larger of bandwidth and matmul. With rounds, every runner sees the slow and
    the fast spells alike, and this falls."""
    if not probes:
        return None
    around = [p for p in probes if label in (p.get("before"), p.get("after"))]
    if not around:
        return None
    distances = []
    for key in ("bandwidth_bytes_s", "matmul_flops_s"):
        median = float(np.median([p[key] for p in probes]))
        distances.append(abs(float(np.mean([p[key] for p in around])) / median - 1))
    return max(distances)


# ---- the judgement ----

def sure_load(load: dict) -> tuple[float | None, float | None]:
    """(other cores, stolen share) with the counters' resolution taken off (a tick per CPU): what the
    load certainly was. A 0.2 s scenario on 2 CPUs spans ~40 ticks, so one stolen tick is not 2.5% steal."""
    ticks = load.get("ticks")
    if not ticks:
        return load.get("other_cores"), load.get("steal")
    slack = ticks["cpus"]
    other = max(0, ticks["other"] - slack) / ticks["per_s"] / max(load["wall_s"], 1e-9)
    steal = max(0, ticks["steal"] - slack) / ticks["total"] if ticks["total"] else 0.0
    return other, steal


def judge_result(r, rules: dict, probes: list[dict]) -> Validity:
    """Valid, unsteady or invalid, with every reason in a sentence and in a few characters for the tables,
    for one ok result (records.Result), judged on what it recorded and the run's drift probes."""
    m, invalid, unsteady = r.metrics, [], []
    repeats = len(r.timed)
    if repeats < rules["min_repeats"]:
        invalid.append((f"{repeats} timed repeat{'s' * (repeats != 1)} < {rules['min_repeats']}",
                        f"repeats {repeats}<{rules['min_repeats']}"))
    timed = sum(x.get("e2e_s", 0) for x in r.timed)
    if timed < rules["min_seconds"]:
        invalid.append((f"{timed:.2f} s timed < {rules['min_seconds']:g} s", f"timed {timed:.1f}s"))
    load = m.load or {}
    other, steal = sure_load(load)
    if other is not None and other > rules["max_other_cores"]:
        unsteady.append((f"other load {load['other_cores']:.2f} cores > {rules['max_other_cores']:g}",
                         f"load {load['other_cores']:.2f}"))
    if steal is not None and steal > rules["max_steal"]:
        unsteady.append((f"{load['steal']:.0%} of CPU time stolen > {rules['max_steal']:.0%}",
                         f"steal {load['steal']:.0%}"))
    drift = worker_drift(probes, r.worker)
    if drift is not None and drift > rules["max_drift"]:
        unsteady.append((f"machine drifted {drift:.0%} around this runner > {rules['max_drift']:.0%}",
                         f"drift {drift:.0%}"))
    target = m.target_ci
    if target and not target.get("met"):
        width = target.get("achieved")
        unsteady.append((f"95% CI ±{width:.1%} > target ±{target['target']:.1%} within {target['budget_s']:g} s",
                         f"CI ±{width:.1%}") if width is not None else
                        (f"no 95% CI within {target['budget_s']:g} s ({repeats} repeats; 6 are needed)", "no CI"))
    roof = r.derived.roofline(r.metric) if r.derived else None
    if roof is not None and roof > 1:
        unsteady.append((f"{roof:.0%} of roofline: the run's ceiling is below what the row reached", f"roof {roof:.0%}"))
    status = "invalid" if invalid else "unsteady" if unsteady else "valid"
    return Validity(status, tuple(long for long, _ in invalid + unsteady), tuple(short for _, short in invalid + unsteady))


def judge(run):
    """The run (records.Run) with each ok result's Validity and the run's validity (status, counts, rules
    and its one line), as a new Run. A run recorded before validity was measured (no probes, no load) is
    "unmeasured"."""
    rules = RULES | (run.suite.get("validity") or {})
    probes = run.drift
    drift = drift_of(probes)
    ok = run.ok_results
    measured = bool(probes) or any(r.metrics.load is not None for r in ok)
    if not measured:
        return dataclasses.replace(run, validity={"status": "unmeasured", "line": "validity: not measured (a run "
                                                  "from before validity was recorded)"})
    judged = {r.id: judge_result(r, rules, probes) for r in ok}
    results = [dataclasses.replace(r, validity=judged[r.id]) if r.ok else r for r in run.results]
    ok = [r for r in results if r.ok]
    counts = {s: sum(r.validity.status == s for r in ok) for s in STATUSES}
    loads = [r.metrics.load for r in ok if "other_cores" in (r.metrics.load or {})]
    evidence = []
    if loads:
        evidence.append(f"other load at most {max(x['other_cores'] for x in loads):.2f} cores, "
                        f"steal at most {max(x['steal'] for x in loads):.1%}")
    if drift:
        low, high = drift["bandwidth_range"]
        runners = {label: worker_drift(probes, label) for label in {r.worker for r in ok}}
        runners = {label: d for label, d in runners.items() if d is not None}
        worst = max(runners, key=runners.get) if runners else None
        evidence.append(f"{len(probes)} machine probes read {low / 1e9:.1f}-{high / 1e9:.1f} GB/s"
                        + (f"; the speed each runner saw within {runners[worst]:.1%} of their median "
                           f"(largest: {worst})" if worst else ""))
        drift["runners"] = runners
    errors = sum(r.status == "error" for r in results)
    if counts["invalid"] or counts["unsteady"] or errors:
        worst = [r for r in ok if r.validity.status != "valid"]
        parts = [f"{counts[s]} {s}" for s in ("invalid", "unsteady") if counts[s]] + [f"{errors} failed"] * bool(errors)
        example = f" ({worst[0].id}: {worst[0].validity.reasons[0]})" if worst else ""
        status = "invalid" if counts["invalid"] or errors else "unsteady"
        line = f"not valid: {', '.join(parts)} of {len(results)} scenarios{example}"
    else:
        status, line = "valid", f"valid: {len(ok)} scenarios"
    validity = {"status": status, "counts": counts, "rules": rules, "drift": drift, "line": "; ".join([line] + evidence)}
    return dataclasses.replace(run, results=results, validity=validity)
