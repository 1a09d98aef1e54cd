"""A bench file's schema beyond its records' fields (run.py declares those, and each record checks its own): the
file read (read_json), the places a check names (Place: one line naming the first thing wrong), the checks on
figures, and the upgrade from schema 1, which Run.from_json applies after the checks. Imports nothing of
benchmarks/ but its labels."""

from __future__ import annotations

import dataclasses
import json
import re

from arraygpt.backends import BACKENDS
from arraygpt.engine.errors import ArrayGPTError
from arraygpt.engine.files import read_text

from .labels import numerics_label, product_key, where_label

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
SCHEMAS = (1, 2)  # what upgrade reads; a newer file is refused rather than misread


@dataclasses.dataclass(frozen=True)
class Place:
    """Where in a bench file a record is read from ('results[3].metrics'), for errors that name it."""

    path: str
    where: str = ""

    def at(self, key) -> "Place":
        return Place(self.path, f"{self.where}.{key}" if self.where else str(key))

    def item(self, index: int) -> "Place":
        return Place(self.path, f"{self.where}[{index}]")

    def fail(self, what: str):
        raise ArrayGPTError(f"{self.path}: {self.where} {what}; not a bench result this arraygpt can read")


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_figures(place: Place, value) -> None:
    """Every number under a measured record is finite and not negative (speeds, times, bytes)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_figures(place.at(key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_figures(place.item(i), item)
    elif is_number(value):
        if value != value or value in (float("inf"), float("-inf")):
            place.fail(f"is {value}: not a measured figure")
        if value < 0:
            place.fail(f"is negative ({value}): not a measured figure")


def check_rate(place: Place, value) -> None:
    """A probe's bandwidth or matmul rate: a positive, finite number."""
    if not (is_number(value) and value > 0 and value != float("inf")):
        place.fail(f"is {value!r}: not a positive rate")


def read_json(path) -> dict:
    try:
        return json.loads(read_text(path))
    except FileNotFoundError:
        raise ArrayGPTError(f"{path}: no such file") from None
    except RecursionError:
        raise ArrayGPTError(f"{path}: nested too deeply to be a result file") from None
    except (OSError, ValueError) as err:
        raise ArrayGPTError(f"{path}: not a readable JSON result file ({err})") from None
