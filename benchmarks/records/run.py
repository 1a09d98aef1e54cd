"""What a bench file holds, as small typed records: a Run of Results (each a scenario, how it ended, its
Metrics, Derived figures and Validity) and the roofline Probes of each worker.

Every record reads itself from JSON (from_json) and writes itself back (to_json); fields this version
does not know are kept in `extra` and written back unchanged. A file is checked and upgraded from an
older schema in one place, Run.from_json: code that holds a Run never sees schema 1. Derived figures and
validity are computed from the measured ones (derive.derive returns a new Run), never written into a
record in place. One label function names a row wherever it is shown (tables, report, plot, compare).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from .labels import headline, metric_of, numerics_label, where_label, worker_label
from .schema import check_bench_file, read_json, upgrade


class Record:
    """to/from JSON for a dataclass: its fields by name, nested records converted, unknown keys in
    `extra`. A None field is left out of the JSON unless the class writes it always (_WRITTEN)."""

    _NESTED: ClassVar[dict] = {}   # field -> the function that reads its JSON value
    _WRITTEN: ClassVar[tuple] = ()  # fields written even when None (as files have always had them)

    @classmethod
    def from_json(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: (cls._NESTED[k](v) if k in cls._NESTED and v is not None else v)
                 for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name not in self._WRITTEN):
                continue
            out[f.name] = _as_json(value)
        return out | copy.deepcopy(self.extra)


def _as_json(value):
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Stat(Record):
    """A figure over the timed repeats: median, interquartile range, extremes, count, and for the headline
    (6 repeats or more) its distribution-free 95% interval {low, high, coverage, half_width}."""

    median: float
    iqr: float | None = None
    min: float | None = None
    max: float | None = None
    n: int | None = None
    ci95: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Latency(Record):
    """Per-token decode latency percentiles over every step of every repeat, in seconds."""

    p50: float
    p90: float
    p99: float
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Metrics(Record):
    """What a worker measured for one scenario (timing.run_repeats, pooled over rounds)."""

    prefill_tps: Stat | None = None
    ttft_s: Stat | None = None
    decode_tps: Stat | None = None   # absent for a single new token
    e2e_s: Stat | None = None
    token_latency_s: Latency | None = None
    first_call_s: float | None = None
    compile_s: float | None = None
    compiled: bool | None = None     # None: a file from before it was recorded (shown as compiling)
    rss_peak_bytes: int | None = None
    device_bytes: int | None = None
    load: dict | None = None         # validity.MachineLoad's record
    energy: dict | None = None       # energy.EnergyMeter's record
    target_ci: dict | None = None    # --target-ci: target, achieved, met, budget_s, repeats
    shape: dict | None = None        # the shapes it ran at: prompt_len, n_slots, loop_steps (a compiling
                                     # backend's bucket, engine/buckets.py)
    extra: dict = dataclasses.field(default_factory=dict)

    _NESTED: ClassVar[dict] = {"prefill_tps": Stat.from_json, "ttft_s": Stat.from_json, "decode_tps": Stat.from_json,
                               "e2e_s": Stat.from_json, "token_latency_s": Latency.from_json}
    _WRITTEN: ClassVar[tuple] = ("device_bytes",)

    def median(self, key: str) -> float | None:
        stat = getattr(self, key, None)
        return stat.median if isinstance(stat, Stat) else None

    @property
    def compiles(self) -> bool:
        return self.compiled is not False


@dataclasses.dataclass(frozen=True)
class Derived(Record):
    """Figures computed from the run (derive.derive): floors, ceilings and rooflines with the probe that set
    them, ratios to peers ('decode_tps_vs_hf', '..._vs_hf_bfloat16' against the peer in the weights' dtype),
    parity and greedy-token agreement with the float64 reference, a mesh row's all-reduce bytes."""

    decode_floor_tps: float | None = None
    decode_roofline: float | None = None
    bandwidth_set_by: str | None = None
    prefill_ceiling_tps: float | None = None
    prefill_roofline: float | None = None
    matmul_set_by: str | None = None
    allreduce_bytes_per_step: float | None = None
    parity_relative: float | None = None
    token_agreement: float | None = None
    ratios: dict = dataclasses.field(default_factory=dict)  # flat in the JSON, as written before
    ratio_peers: dict = dataclasses.field(default_factory=dict)  # each ratio's name -> the peer row's id
    extra: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict):
        ratios = {k: v for k, v in data.items() if "_vs_" in k and k != "ratio_peers"}
        record = super().from_json({k: v for k, v in data.items() if k not in ratios})
        return dataclasses.replace(record, ratios=ratios)

    def to_json(self) -> dict:
        out = super().to_json()
        ratios = out.pop("ratios", {})
        if not out.get("ratio_peers"):  # files from before it was recorded read back as written
            out.pop("ratio_peers", None)
        return out | ratios

    def roofline(self, metric: str) -> float | None:
        return self.decode_roofline if metric == "decode" else self.prefill_roofline

    def ratio(self, metric: str, peer: str, narrow: str | None = None) -> float | None:
        """The row's tokens/s over the peer's ('decode' or 'prefill'); narrow: against the peer in that dtype."""
        return self.ratios.get(f"{metric}_tps_vs_{peer}" + (f"_{narrow}" if narrow else ""))


@dataclasses.dataclass(frozen=True)
class Validity(Record):
    status: str = "unmeasured"   # valid, unsteady, invalid; unmeasured: a run from before validity
    reasons: tuple = ()
    short: tuple = ()            # each reason in a few characters, for the tables
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        return self.status in ("valid", "unmeasured")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result(Record):
    """One scenario of a run: what ran, how it ended and, when ok, what it measured and what follows
    (fields in the order the files have always listed them)."""

    group: str | None = None
    model: str
    runner: str
    device: str | None = None
    dtype: str
    batch: int
    prompt_len: int
    new_tokens: int
    warmup: int | None = None
    repeats: Any = None          # the timed repeats' records; an int (the planned count) on a row that did not run
    precision: str = "float32"
    weights: str | None = None
    mesh: str | None = None
    threads: int | None = None
    id: str
    numerics: str | None = None  # set from dtype, precision and weights where a file lacks it
    status: str                  # ok, skipped (not installed here), error
    message: str | None = None
    device_key: str = "cpu"
    metrics: Metrics | None = None
    derived: Derived | None = None
    validity: Validity | None = None
    rounds: int | None = None
    round_errors: list | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    _NESTED: ClassVar[dict] = {"metrics": Metrics.from_json, "derived": Derived.from_json,
                               "validity": Validity.from_json}
    _WRITTEN: ClassVar[tuple] = ("device", "weights", "mesh", "threads")

    def __post_init__(self):
        if self.numerics is None:
            object.__setattr__(self, "numerics", numerics_label(self.dtype, self.precision or "float32", self.weights))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def worker(self) -> str:
        """The worker it ran in: how its probes and parity are keyed."""
        return worker_label(self.runner, self.device, self.mesh, self.precision or "float32", self.threads)

    @property
    def workload(self) -> tuple:
        """What is measured, whoever runs it: (model, numerics, batch, prompt_len, new_tokens)."""
        return (self.model, self.numerics, self.batch, self.prompt_len, self.new_tokens)

    @property
    def timed(self) -> list[dict]:
        return list(self.repeats) if isinstance(self.repeats, (list, tuple)) else []

    @property
    def metric(self) -> str:
        """'decode' or 'prefill': what the row is judged by (labels.metric_of)."""
        return metric_of(self.new_tokens)

    @property
    def headline(self):
        """The Stat of the figure the row is judged by (None before it was measured)."""
        return getattr(self.metrics, self.headline_key, None) if self.metrics else None

    @property
    def headline_key(self) -> str:
        """'decode_tps', or 'prefill_tps' for a single new token: the figure the row is judged by."""
        return headline(self.new_tokens)

    def headline_values(self) -> list[float]:
        """Each timed repeat's headline figure."""
        return [r[self.headline_key] for r in self.timed if self.headline_key in r]


def label(r: Result, device: bool = True, numerics: bool = False) -> str:
    """How a row is named wherever it is shown: 'jax:gpu[tp=2]@1t', with its numerics 'jax:gpu float32+tf32'.
    device=False leaves the device to a column of its own (report)."""
    where = where_label(r.runner, r.device if device else None, r.mesh, r.threads)
    return f"{where} {r.numerics}" if numerics else where


@dataclasses.dataclass(frozen=True)
class Probe(Record):
    """A worker's roofline probe for one product arithmetic: float32 bandwidth (matrix x vector) and the
    matmul rate, on a device; or, where it failed, the message."""

    key: str | None = None
    dtype: str | None = None
    precision: str | None = None
    device: str | None = None
    device_key: str = "cpu"
    bandwidth_bytes_s: float | None = None
    matmul_flops_s: float | None = None
    message: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.bandwidth_bytes_s is not None


def _probes(data: dict) -> dict:
    return {label: {key: Probe.from_json(p) for key, p in by_key.items()} for label, by_key in data.items()}


@dataclasses.dataclass(frozen=True)
class Run(Record):
    """A bench file: where and when it ran, the suite, and every scenario's result, with the probes,
    parity cells and machine drift probes the results are judged against."""

    kind: str = "arraygpt-bench"
    schema: int = 2
    environment: dict = dataclasses.field(default_factory=dict)
    suite: dict = dataclasses.field(default_factory=dict)
    scenarios: list = dataclasses.field(default_factory=list)
    models: dict = dataclasses.field(default_factory=dict)
    probes: dict = dataclasses.field(default_factory=dict)   # worker label -> product key -> Probe
    parity: dict = dataclasses.field(default_factory=dict)   # worker label -> 'model/numerics' -> cell
    drift: list = dataclasses.field(default_factory=list)    # machine probes before, between, after workers
    results: list = dataclasses.field(default_factory=list)  # Result records
    complete: bool = False
    ceilings: dict | None = None   # derived: device -> bandwidth and matmul ceilings with who set them
    validity: dict | None = None   # derived: the run's status, counts, rules and its one line
    extra: dict = dataclasses.field(default_factory=dict)

    _NESTED: ClassVar[dict] = {"results": lambda rs: [Result.from_json(r) for r in rs], "probes": _probes}

    @classmethod
    def from_json(cls, doc: dict, where=None) -> "Run":
        """A Run from a bench file's JSON: checked first when `where` names the file (a one-line error
        naming what is wrong), upgraded from schema 1 on a copy (the caller's dict is left as it was)."""
        if where is not None:
            check_bench_file(doc, where)
        return super().from_json(upgrade(copy.deepcopy(doc)))

    @classmethod
    def load(cls, path) -> "Run":
        return cls.from_json(read_json(path), path)

    @property
    def ok_results(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    def ratio_doubtful(self, r: "Result", metric: str, peer: str, narrow: str | None = None) -> bool:
        """Whether a ratio of r to a peer carries a doubt: r's row or the peer's row is unsteady or invalid."""
        name = f"{metric}_tps_vs_{peer}" + (f"_{narrow}" if narrow else "")
        peer_id = r.derived.ratio_peers.get(name) if r.derived else None
        theirs = next((x for x in self.results if x.id == peer_id), None)
        return any(x is not None and x.validity is not None and not x.validity.trusted for x in (r, theirs))

    @property
    def machine(self) -> dict:
        return self.environment["machine"]

    @property
    def date(self) -> str:
        return self.environment.get("date", "")[:10]

    @property
    def label(self) -> str:
        """'NVIDIA H100 80GB HBM3, 2026-11-25' or 'AMD EPYC (2 cores), 2026-11-25'."""
        gpus = [g["name"] for g in self.machine.get("gpus", [])]
        where = (", ".join(dict.fromkeys(gpus)) if gpus
                 else f"{self.machine.get('cpu', '?')} ({self.machine.get('cores', '?')} cores)")
        return f"{where}, {self.date}"

    @property
    def validity_line(self) -> str:
        return (self.validity or {}).get("line", "validity: not judged")


def as_run(doc, where=None) -> Run:
    """A Run, whether given one or a bench file's JSON (checked when `where` names it)."""
    return doc if isinstance(doc, Run) else Run.from_json(doc, where)
