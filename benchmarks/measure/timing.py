"""Timing one scenario: warm-up runs, timed repeats, the device synchronized before each clock read.

Every runner (benchmarks/runners/) produces the same record from these helpers. Each repeat generates
exactly new_tokens tokens (no early stop) from a fixed random prompt and records the time of every token.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import threading
import time

import numpy as np

from ..records import Measured, Metrics, Result, Scenario, headline
from .energy import EnergyMeter, pooled as pooled_energy
from .load import MachineLoad, pooled_load

PARITY_PROMPT_LEN = 16


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a worker times one scenario: warm-up runs, timed repeats (this round's share of the scenario's), the
    device its energy is read on, and for --target-ci the interval wanted, the time it may take and the
    headline figures of the rounds before."""

    warmup: int
    repeats: int
    device_key: str = "cpu"
    target_ci: float | None = None
    ci_budget_s: float = 60.0
    prior: tuple = ()


class PeakRSS:
    """Samples this process's resident memory in a thread: the peak during a block of work."""

    def __init__(self, interval=0.005):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def fixed_prompts(batch: int, prompt_len: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """Random prompt ids, the same for a seed everywhere: the one helper the bench, parity and probes use."""
    return np.random.default_rng(seed).integers(0, vocab_size, size=(batch, prompt_len)).tolist()


def summarize_run(token_times: list[float], start: float, batch: int, prompt_len: int,
                  decoded_in_one_call: bool = False) -> dict:
    """One repeat: token_times[i] is the clock when token i of every row was on the host.

    decoded_in_one_call: tokens after the first arrived together (jax-loop), so each step is
    credited the mean step time; per-token latency percentiles then describe that mean only."""
    ttft = token_times[0] - start
    steps = np.diff(token_times)
    if decoded_in_one_call and len(steps):
        steps = np.full(len(steps), (token_times[-1] - token_times[0]) / len(steps))
    record = {"ttft_s": ttft, "prefill_tps": batch * prompt_len / ttft, "e2e_s": token_times[-1] - start,
              "step_s": steps.tolist()}
    if len(steps):
        record["decode_tps"] = batch * len(steps) / (token_times[-1] - token_times[0])
    return record


def aggregate(repeats: list[dict]) -> dict:
    """Median and spread over repeats, and per-token latency percentiles over every decode step."""
    out = {}
    for key in ("prefill_tps", "ttft_s", "decode_tps", "e2e_s"):
        values = [r[key] for r in repeats if key in r]
        if values:
            q1, median, q3 = np.percentile(values, [25, 50, 75])
            out[key] = {"median": float(median), "iqr": float(q3 - q1), "min": float(min(values)),
                        "max": float(max(values)), "n": len(values)}
    steps = np.concatenate([r["step_s"] for r in repeats]) if repeats else np.array([])
    if steps.size:
        p50, p90, p99 = np.percentile(steps, [50, 90, 99])
        out["token_latency_s"] = {"p50": float(p50), "p90": float(p90), "p99": float(p99)}
    return out


def median_interval(values, confidence: float = 0.95) -> dict | None:
    """A distribution-free interval for the median: the order statistics (x_(k), x_(n-k+1)) whose binomial
    coverage is at least `confidence`. None when no such pair exists (fewer than 6 values at 95%): a
    handful of repeats bounds nothing."""
    x, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n and tail + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return None
    median = float(np.median(x))
    low, high = float(x[k - 1]), float(x[n - k])
    return {"low": low, "high": high, "coverage": 1 - 2 * tail,
            "half_width": max(median - low, high - median) / median if median else math.inf}


def tokens_of(scenario: Scenario | Result) -> int:
    """Tokens one repeat produces, the unit of energy per token: new tokens, or prompt tokens for a prefill."""
    return scenario.batch * (scenario.new_tokens if scenario.new_tokens > 1 else scenario.prompt_len)


def summarized(repeats: list[dict], metric: str) -> dict:
    """aggregate(), with the headline's 95% interval where there are enough repeats for one."""
    metrics = aggregate(repeats)
    interval = median_interval([r[metric] for r in repeats if metric in r])
    if interval and metric in metrics:
        metrics[metric]["ci95"] = interval
    return metrics


def run_repeats(one_run, scenario: Scenario, plan: Plan) -> Measured:
    """Warm-up runs (the first one kept as first_call_s: it includes compilation), then timed repeats: the
    plan's count, then more while plan.target_ci is set and the 95% interval of the headline's median is
    wider than it (half-width / median), until plan.ci_budget_s of timed work is spent. What else ran
    meanwhile (load.MachineLoad) and the energy used (energy.EnergyMeter) are recorded."""
    first = None
    for _ in range(plan.warmup):
        run = one_run()
        first = first if first is not None else run
    metric, target, budget = headline(scenario.new_tokens), plan.target_ci, plan.ci_budget_s

    def width(repeats):
        interval = median_interval([r[metric] for r in repeats if metric in r])
        return math.inf if interval is None else interval["half_width"]

    # Earlier rounds' figures of this scenario (--rounds): the interval is of all of them together.
    prior = [{metric: value} for value in plan.prior]
    with PeakRSS() as rss, MachineLoad() as load, EnergyMeter(plan.device_key) as energy:
        start = time.monotonic()
        repeats = [one_run() for _ in range(plan.repeats)]
        while target and width(prior + repeats) > target and time.monotonic() - start < budget:
            repeats.append(one_run())
    metrics = summarized(repeats, metric)
    if target:
        achieved = width(prior + repeats)
        metrics["target_ci"] = {"target": target, "achieved": None if math.isinf(achieved) else achieved,
                                "met": achieved <= target, "budget_s": budget, "repeats": len(prior + repeats)}
    if first is not None:
        metrics["first_call_s"] = first["e2e_s"]
        metrics["compile_s"] = max(0.0, first["e2e_s"] - metrics["e2e_s"]["median"])
    metrics["rss_peak_bytes"] = rss.peak
    metrics["load"] = load.record
    metrics["energy"] = energy.result(tokens_of(scenario) * len(repeats))
    for r in repeats:
        r["step_s"] = [round(s, 7) for s in r["step_s"]]
    return Measured(Metrics.from_json(metrics), repeats)


def pool_rounds(earlier: Result, later: Result) -> Result:
    """One scenario's result from two rounds (worker processes at different times, --rounds): the repeats
    pooled and the figures made again from them; CPU load weighted by time; energy summed; the first
    round's first call (the later rounds' warm-ups compile again, in processes of their own)."""
    repeats = earlier.repeats + later.repeats
    m_old, m_new = earlier.metrics.to_json(), later.metrics.to_json()
    metrics = m_old | summarized(repeats, earlier.headline_key)
    if "first_call_s" in m_old:
        metrics["compile_s"] = max(0.0, m_old["first_call_s"] - metrics["e2e_s"]["median"])
    for key in ("rss_peak_bytes", "device_bytes"):
        if m_new.get(key) is not None:
            metrics[key] = max(m_old.get(key) or 0, m_new[key])
    metrics["load"] = pooled_load(m_old.get("load", {}), m_new.get("load", {}))
    metrics["energy"] = pooled_energy(m_old.get("energy", {}), m_new.get("energy", {}), tokens_of(earlier) * len(repeats))
    if "target_ci" in m_new:
        metrics["target_ci"] = m_new["target_ci"]
    return dataclasses.replace(earlier, metrics=Metrics.from_json(metrics), repeats=repeats,
                               rounds=(earlier.rounds or 1) + 1)
