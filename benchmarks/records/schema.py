"""A bench file's schema, apart from its records' fields: the file read (read_json), checked (check_bench_file:
one line naming the place of the first thing wrong) and upgraded from schema 1 (upgrade), before Run.from_json
builds the records. Imports nothing of benchmarks/ but its labels."""

from __future__ import annotations

import json
import re

from backends import BACKENDS
from engine.errors import ArrayGPTError
from engine.files import read_text

from .labels import headline as headline_of, numerics_label, product_key, where_label

SCHEMA = 2


def _ran_tf32_by_default(runner: str) -> bool:
    """Before schema 2 the JAX adapters ran float32 at JAX's default matmul precision (TF32-like on GPUs)."""
    return runner in BACKENDS and BACKENDS[runner].library == "jax"


def device_key_of(device_name: str | None) -> str:
    """'gpu:0 (NVIDIA H100)', 'cuda:0 (...)', 'cpu:0', 'cpu' -> 'gpu:0' or 'cpu' (schema 1 probes)."""
    match = re.match(r"(gpu|cuda|tpu):?(\d*)", (device_name or "").strip())
    if not match:
        return "cpu"
    kind = "gpu" if match.group(1) == "cuda" else match.group(1)
    return f"{kind}:{match.group(2) or 0}"


def upgrade(doc: dict) -> dict:
    """Fill in a schema 1 file in place: each result's precision, weights, numerics and device_key, and
    probes and parity keyed by numerics. Before schema 2, JAX ran float32 at its default matmul
    precision, which is TF32-like on NVIDIA GPUs: those rows are labelled float32+tf32."""
    if doc.get("schema", 1) >= SCHEMA:
        return doc
    probes, parity = doc.get("probes", {}), doc.get("parity", {})
    label_device = {label: device_key_of(next(iter(by_dtype.values()), {}).get("device"))
                    for label, by_dtype in probes.items()}

    def precision_of(label: str, dtype: str) -> str:
        tf32 = (_ran_tf32_by_default(label.split(":")[0]) and label_device.get(label, "cpu") != "cpu"
                and dtype == "float32")
        return "tf32" if tf32 else "float32"

    for r in doc.get("results", []):
        label = where_label(r["runner"], r.get("device"))
        r.setdefault("device_key", label_device.get(label, "gpu:0" if r.get("device") == "gpu" else "cpu"))
        label_device.setdefault(label, r["device_key"])
        r.setdefault("precision", precision_of(label, r["dtype"]))
        r.setdefault("weights", None)
        r["numerics"] = numerics_label(r["dtype"], r["precision"], r["weights"])
    doc["probes"], doc["parity"] = {}, {}
    for label, by_dtype in probes.items():
        for dtype, p in by_dtype.items():
            precision = precision_of(label, dtype)
            key = product_key(dtype, precision)
            new_label = label + ("+tf32" if precision == "tf32" else "")
            doc["probes"].setdefault(new_label, {})[key] = p | {"key": key, "precision": precision,
                                                                 "device_key": label_device[label]}
    for label, cells in parity.items():
        for key, cell in cells.items():
            model, dtype = key.rsplit("/", 1)
            precision = precision_of(label, dtype)
            new_label = label + ("+tf32" if precision == "tf32" else "")
            doc["parity"].setdefault(new_label, {})[f"{model}/{numerics_label(dtype, precision)}"] = cell
    doc["upgraded_from_schema"] = doc.get("schema", 1)
    doc["schema"] = SCHEMA
    return doc


BENCH_KIND = "arraygpt-bench"
_SCHEMAS = (1, 2)  # what derive.upgrade reads; a newer file is refused rather than misread
_COUNTS = ("batch", "prompt_len", "new_tokens")


def _fail(path, where: str, what: str):
    raise ArrayGPTError(f"{path}: {where} {what}; not a bench result this arraygpt can read")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_figures(path, where: str, value) -> None:
    """Every number under a measured record is finite and not negative (speeds, times, bytes)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_figures(path, f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_figures(path, f"{where}[{i}]", item)
    elif _is_number(value):
        if value != value or value in (float("inf"), float("-inf")):
            _fail(path, where, f"is {value}: not a measured figure")
        if value < 0:
            _fail(path, where, f"is negative ({value}): not a measured figure")


def check_bench_file(doc, path) -> None:
    """A one-line error unless doc is a bench result this version reads, with sound figures: what
    compare, report and plot check before they use a file (NaN, infinite or negative figures, an unknown
    schema, fields missing or of the wrong type are refused, naming where)."""
    if not isinstance(doc, dict) or doc.get("kind") != BENCH_KIND:
        raise ArrayGPTError(f"{path}: not an arraygpt bench result (no \"kind\": \"{BENCH_KIND}\"); "
                            "give files written by `arraygpt bench --json`")
    schema = doc.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema not in _SCHEMAS:
        raise ArrayGPTError(f"{path}: bench schema {schema!r} is not one this arraygpt reads "
                            f"({', '.join(map(str, _SCHEMAS))}); a newer arraygpt wrote it?")
    env = doc.get("environment")
    if not isinstance(env, dict) or not isinstance(env.get("machine"), dict):
        _fail(path, "environment.machine", "is missing")
    if not isinstance(env.get("date"), str):
        _fail(path, "environment.date", "is missing or not a string")
    machine = env["machine"]
    if not isinstance(machine.get("cpu", ""), str) or not isinstance(machine.get("cores", 1), int):
        _fail(path, "environment.machine", "has a cpu or cores of the wrong type")
    gpus = machine.get("gpus", [])
    if not isinstance(gpus, list) or not all(isinstance(g, dict) and isinstance(g.get("name"), str) for g in gpus):
        _fail(path, "environment.machine.gpus", "is not a list of GPUs with names")
    if not isinstance(doc.get("complete", False), bool):
        _fail(path, "complete", "is not true or false")
    for name in ("probes", "parity", "models", "suite"):
        if not isinstance(doc.get(name, {}), dict):
            _fail(path, name, "is not an object")
    for label, by_key in doc.get("probes", {}).items():
        if not isinstance(by_key, dict) or not all(isinstance(p, dict) for p in by_key.values()):
            _fail(path, f"probes.{label}", "is not an object of probes")
        for key, p in by_key.items():
            _check_figures(path, f"probes.{label}.{key}", {k: v for k, v in p.items() if k.endswith("_s") or
                                                           k.endswith("_bytes")})
            for field in ("bandwidth_bytes_s", "matmul_flops_s"):
                if field in p and not (_is_number(p[field]) and p[field] > 0):
                    _fail(path, f"probes.{label}.{key}.{field}", f"is {p[field]!r}: not a positive rate")
    for label, cells in doc.get("parity", {}).items():
        if not isinstance(cells, dict) or not all(isinstance(c, dict) for c in cells.values()):
            _fail(path, f"parity.{label}", "is not an object of parity cells")
        for key, cell in cells.items():
            _check_figures(path, f"parity.{label}.{key}", {k: cell[k] for k in ("max_abs", "relative") if k in cell})
    drift = doc.get("drift", [])
    if not isinstance(drift, list) or not all(isinstance(p, dict) for p in drift):
        _fail(path, "drift", "is not a list of machine probes")
    for i, p in enumerate(drift):
        for field in ("bandwidth_bytes_s", "matmul_flops_s"):
            if not (_is_number(p.get(field)) and p[field] > 0 and p[field] != float("inf")):
                _fail(path, f"drift[{i}].{field}", f"is {p.get(field)!r}: not a positive rate")
    results = doc.get("results")
    if not isinstance(results, list):
        _fail(path, "results", "is not a list")
    for i, r in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(r, dict):
            _fail(path, where, "is not an object")
        for field in ("id", "runner", "model", "dtype", "status"):
            if not isinstance(r.get(field), str):
                _fail(path, f"{where}.{field}", "is missing or not a string")
        for field in _COUNTS:
            if not isinstance(r.get(field), int) or isinstance(r.get(field), bool) or r[field] < 1:
                _fail(path, f"{where}.{field}", "is missing or not an integer >= 1")
        for field in ("device", "mesh", "weights", "device_key"):
            if r.get(field) is not None and not isinstance(r[field], str):
                _fail(path, f"{where}.{field}", "is not a string")
        if r["status"] != "ok":
            continue
        metrics, repeats = r.get("metrics"), r.get("repeats")
        if not isinstance(metrics, dict) or not isinstance(repeats, list) or not all(isinstance(x, dict) for x in repeats):
            _fail(path, where, "has no metrics or repeats")
        headline = headline_of(r["new_tokens"])
        median = metrics.get(headline, {}).get("median") if isinstance(metrics.get(headline), dict) else None
        if not _is_number(median) or not median > 0:
            _fail(path, f"{where}.metrics.{headline}.median", f"is {median!r}: not a positive speed")
        _check_figures(path, f"{where}.metrics", metrics)
        _check_figures(path, f"{where}.repeats", repeats)


def read_json(path) -> dict:
    try:
        return json.loads(read_text(path))
    except FileNotFoundError:
        raise ArrayGPTError(f"{path}: no such file") from None
    except RecursionError:
        raise ArrayGPTError(f"{path}: nested too deeply to be a result file") from None
    except (OSError, ValueError) as err:
        raise ArrayGPTError(f"{path}: not a readable JSON result file ({err})") from None
