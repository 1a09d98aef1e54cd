"""What a bench file holds, as small typed records: a Run of Results (each a scenario, how it ended, its
Metrics, Derived figures and Validity) and the roofline Probes of each worker.

Typed both ways: a runner returns what it Measured (Metrics and the timed repeats), its worker sends the
scenario's Result, the harness keeps a Run and writes it. Every record reads itself from JSON (from_json) and
writes itself back (to_json); fields this version does not know are kept in `extra` and written back
unchanged. The fields are the schema: a file is checked against them (Record.check, one line naming the place
of the first thing wrong) and upgraded from an older schema in one place, Run.from_json: code that holds a
Run never sees schema 1. Derived figures and
validity are computed from the measured ones (derive.derive returns a new Run), never written into a
record in place. One label function names a row wherever it is shown (tables, report, plot, compare).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

from arraygpt.engine.errors import ArrayGPTError

from .labels import headline, metric_of, numerics_label, where_label, worker_label
from .scenario import Scenario
from .schema import BENCH_KIND, SCHEMA, SCHEMAS, Place, check_figures, check_rate, is_number, read_json, upgrade


class Record:
    """A dataclass read from and written to JSON: its fields by name, nested records converted, unknown keys in
    `extra`. A None field is left out of the JSON unless the class writes it always (_WRITTEN).

    The fields are the schema: from_json with a Place checks a file's JSON against them before reading it (each
    field's type as annotated, a field without a default required), then what the types
    cannot say (_check_more), then each nested record against its own fields, and names the first thing wrong.
    null is allowed where the annotation allows None."""

    _WRITTEN: ClassVar[tuple] = ()  # fields written even when None (as files have always had them)
    _RECORDS: ClassVar[dict] = {}   # every Record class by name: how an annotation names a nested record

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Record._RECORDS[cls.__name__] = cls

    @classmethod
    def _schema(cls) -> list[tuple[str, tuple, bool, "type | None"]]:
        """(field, the annotation's type names, whether required, the nested Record class) for each field."""
        out = []
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            names = tuple(part.strip() for part in f.type.split("|"))
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            out.append((f.name, names, required, next((Record._RECORDS[n] for n in names if n in Record._RECORDS), None)))
        return out

    @classmethod
    def check(cls, data, place: Place) -> None:
        """A one-line error naming the place unless data is this record's JSON (see the class's docstring)."""
        if not isinstance(data, dict):
            place.fail("is not an object")
        for name, types, required, _ in cls._schema():
            if name not in data:
                if required:
                    place.at(name).fail(f"is missing or not {_word(types[0])}")
            elif not (data[name] is None and "None" in types) and not any(_is_of(data[name], t) for t in types):
                place.at(name).fail(("is missing or not " if required else "is not ") + _word(types[0]))
        cls._check_more(data, place)
        for name, _, _, record in cls._schema():
            if record is not None and data.get(name) is not None:
                record.check(data[name], place.at(name))

    @classmethod
    def _check_more(cls, data: dict, place: Place) -> None:
        """What the fields' types cannot say (ranges, figures), before the nested records are checked."""

    @classmethod
    def from_json(cls, data: dict, place: Place | None = None):
        """The record from its JSON; checked first where place says which file and where in it."""
        if place is not None:
            cls.check(data, place)
        nested = {name: record for name, _, _, record in cls._schema() if record is not None}
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: (nested[k].from_json(v) if k in nested and v is not None else v)
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


# An annotation's type name -> (the JSON values it holds, how an error names it). A record's name holds an object.
_WORDS = {"str": (str, "a string"), "int": (int, "an integer"), "float": ((int, float), "a number"),
          "bool": (bool, "true or false"), "dict": (dict, "an object"), "list": (list, "a list"),
          "tuple": ((list, tuple), "a list"), "Any": (object, "a value")}


def _word(type_name: str) -> str:
    return _WORDS[type_name][1] if type_name in _WORDS else "an object"


def _is_of(value, type_name: str) -> bool:
    kinds = _WORDS[type_name][0] if type_name in _WORDS else dict
    return isinstance(value, kinds) and (type_name in ("bool", "Any") or not isinstance(value, bool))


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
    capture_s: float | None = None   # a recorded step's captures, apart from first_call_s (CUDA graphs)
    per_device: dict | None = None   # on a mesh: the weight and KV-cache bytes the first device holds
    threads: dict | None = None      # with --threads: the cores and each library's thread pools it ran on
    threads_used: int | None = None  # a peer's own thread count (llama.cpp, ONNX Runtime)
    products: str | None = None      # how our adapter computed the weight products (Backend.products_for)
    extra: dict = dataclasses.field(default_factory=dict)

    _WRITTEN: ClassVar[tuple] = ("device_bytes",)

    @classmethod
    def _check_more(cls, data: dict, place: Place) -> None:
        check_figures(place, data)

    def median(self, key: str) -> float | None:
        stat = getattr(self, key, None)
        return stat.median if isinstance(stat, Stat) else None


    @property
    def compiles(self) -> bool:
        return self.compiled is not False


@dataclasses.dataclass(frozen=True)
class Measured:
    """What a runner returns for one scenario (measure/timing.run_repeats, then the runner's own figures): its
    Metrics and each timed repeat's record, which a Result holds."""

    metrics: Metrics
    repeats: list

    def with_figures(self, **figures) -> "Measured":
        """The same, with more of the runner's figures in its Metrics (device bytes, compiled, ...)."""
        return dataclasses.replace(self, metrics=dataclasses.replace(self.metrics, **figures))


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
    def from_json(cls, data: dict, place: Place | None = None):
        ratios = {k: v for k, v in data.items() if "_vs_" in k and k != "ratio_peers"}
        record = super().from_json({k: v for k, v in data.items() if k not in ratios}, place)
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

    _WRITTEN: ClassVar[tuple] = ("device", "weights", "mesh", "threads")
    _COUNTS: ClassVar[tuple] = ("batch", "prompt_len", "new_tokens")

    def __post_init__(self):
        if self.numerics is None:
            object.__setattr__(self, "numerics", numerics_label(self.dtype, self.precision or "float32", self.weights))

    @classmethod
    def of(cls, scenario: Scenario, status: str, **outcome) -> "Result":
        """A scenario's row: how it ended (ok, skipped, error) and, when ok, its Metrics and timed repeats."""
        return cls(**(scenario.to_json() | {"status": status} | outcome))

    @classmethod
    def _check_more(cls, data: dict, place: Place) -> None:
        for name in cls._COUNTS:
            if data[name] < 1:
                place.at(name).fail("is missing or not an integer >= 1")
        if data["status"] != "ok":
            return
        metrics, repeats = data.get("metrics"), data.get("repeats")
        if not isinstance(metrics, dict) or not isinstance(repeats, list) or not all(isinstance(x, dict) for x in repeats):
            place.fail("has no metrics or repeats")
        key = headline(data["new_tokens"])
        median = metrics.get(key, {}).get("median") if isinstance(metrics.get(key), dict) else None
        if not is_number(median) or not median > 0:
            place.at("metrics").at(key).at("median").fail(f"is {median!r}: not a positive speed")
        check_figures(place.at("repeats"), repeats)

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

    @classmethod
    def _check_more(cls, data: dict, place: Place) -> None:
        check_figures(place, {k: v for k, v in data.items() if k.endswith("_s") or k.endswith("_bytes")})
        for name in ("bandwidth_bytes_s", "matmul_flops_s"):
            if name in data:
                check_rate(place.at(name), data[name])


@dataclasses.dataclass(frozen=True)
class Run(Record):
    """A bench file: where and when it ran, the suite, and every scenario's result, with the probes,
    parity cells and machine drift probes the results are judged against."""

    kind: str = BENCH_KIND
    schema: int = SCHEMA
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

    @classmethod
    def from_json(cls, doc: dict, where=None) -> "Run":
        """A Run from a bench file's JSON: checked first when `where` names the file (a one-line error naming
        what is wrong; compare, report and plot read no other), upgraded from schema 1 on a copy (the caller's
        dict is left as it was), its results and probes read as records."""
        if where is not None:
            cls.check(doc, Place(str(where)))
        run = super().from_json(upgrade(copy.deepcopy(doc)))
        return dataclasses.replace(run, results=[Result.from_json(r) for r in run.results],
                                   probes={label: {key: Probe.from_json(p) for key, p in by_key.items()}
                                           for label, by_key in run.probes.items()})

    @classmethod
    def check(cls, doc, place: Place) -> None:
        if not isinstance(doc, dict) or doc.get("kind") != BENCH_KIND:
            raise ArrayGPTError(f"{place.path}: not an arraygpt bench result (no \"kind\": \"{BENCH_KIND}\"); "
                                "give files written by `arraygpt bench --json`")
        schema = doc.get("schema", 1)
        if not isinstance(schema, int) or isinstance(schema, bool) or schema not in SCHEMAS:
            raise ArrayGPTError(f"{place.path}: bench schema {schema!r} is not one this arraygpt reads "
                                f"({', '.join(map(str, SCHEMAS))}); a newer arraygpt wrote it?")
        super().check(doc, place)

    @classmethod
    def _check_more(cls, doc: dict, place: Place) -> None:
        """The machine it ran on, the probes and parity cells, the drift probes, each result."""
        env = doc.get("environment")
        if not isinstance(env, dict) or not isinstance(env.get("machine"), dict):
            place.at("environment").at("machine").fail("is missing")
        if not isinstance(env.get("date"), str):
            place.at("environment").at("date").fail("is missing or not a string")
        machine = env["machine"]
        if not isinstance(machine.get("cpu", ""), str) or not isinstance(machine.get("cores", 1), int):
            place.at("environment").at("machine").fail("has a cpu or cores of the wrong type")
        settings = env.get("kernel_settings", {})
        if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
            place.at("environment").at("kernel_settings").fail("is not an object of environment variables")
        gpus = machine.get("gpus", [])
        if not isinstance(gpus, list) or not all(isinstance(g, dict) and isinstance(g.get("name"), str) for g in gpus):
            place.at("environment").at("machine").at("gpus").fail("is not a list of GPUs with names")
        for label, by_key in (doc.get("probes") or {}).items():
            if not isinstance(by_key, dict) or not all(isinstance(p, dict) for p in by_key.values()):
                place.at("probes").at(label).fail("is not an object of probes")
            for key, p in by_key.items():
                Probe.check(p, place.at("probes").at(label).at(key))
        for label, cells in (doc.get("parity") or {}).items():
            if not isinstance(cells, dict) or not all(isinstance(c, dict) for c in cells.values()):
                place.at("parity").at(label).fail("is not an object of parity cells")
            for key, cell in cells.items():
                check_figures(place.at("parity").at(label).at(key),
                              {k: cell[k] for k in ("max_abs", "relative") if k in cell})
        for i, p in enumerate(doc.get("drift") or []):
            if not isinstance(p, dict):
                place.at("drift").fail("is not a list of machine probes")
            for name in ("bandwidth_bytes_s", "matmul_flops_s"):
                check_rate(place.at("drift").item(i).at(name), p.get(name))
        results = doc.get("results")
        if not isinstance(results, list):
            place.at("results").fail("is not a list")
        for i, r in enumerate(results):
            Result.check(r, place.at("results").item(i))

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
    def kernel_settings_line(self) -> str:
        """'ATEN_CPU_CAPABILITY=avx2 ...' where the run capped an instruction set or swapped a library build; ''."""
        return settings_line(self.environment.get("kernel_settings"))

    @property
    def date(self) -> str:
        return self.environment.get("date", "")[:10]

    @property
    def label(self) -> str:
        """'NVIDIA H100 80GB HBM3, 2026-11-25' or 'AMD EPYC (family 25 model 17, 2 cores), 2026-11-25'."""
        gpus = [g["name"] for g in self.machine.get("gpus", [])]
        cpu_id = f"{self.machine['cpu_id']}, " if self.machine.get("cpu_id") else ""  # older files lack it
        where = (", ".join(dict.fromkeys(gpus)) if gpus
                 else f"{self.machine.get('cpu', '?')} ({cpu_id}{self.machine.get('cores', '?')} cores)")
        return f"{where}, {self.date}"

    @property
    def validity_line(self) -> str:
        return (self.validity or {}).get("line", "validity: not judged")


def settings_line(settings: dict | None) -> str:
    """environment.kernel_settings in one line, 'NAME=value NAME=value' ('' where none was set)."""
    return " ".join(f"{k}={v}" for k, v in (settings or {}).items())


def as_run(doc, where=None) -> Run:
    """A Run, whether given one or a bench file's JSON (checked when `where` names it)."""
    return doc if isinstance(doc, Run) else Run.from_json(doc, where)
