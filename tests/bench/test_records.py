"""Typed bench records (benchmarks/records.py): every committed file loads and writes itself back, the
schema is upgraded at load only, derive returns a new Run, one label names a row everywhere."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from arraygpt.benchmarks.judge.derive import derive
from arraygpt.benchmarks.records import Result, Run, label

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
BENCH_FILES = sorted(p for p in RESULTS.glob("*.json") if json.loads(p.read_text()).get("kind") == "arraygpt-bench")


def _present(value):
    """The JSON with null fields and empty lists or objects left out: absent and null read the same."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, (list, tuple)):
        return [_present(v) for v in value]
    return value


@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda p: p.stem)
def test_every_committed_file_loads_and_writes_itself_back(path):
    doc = json.loads(path.read_text())
    run = Run.load(path)
    assert all(isinstance(r, Result) for r in run.results) and len(run.results) == len(doc["results"])
    written = run.to_json()
    if doc.get("schema", 1) >= 2:  # newer files: what was read is what is written
        assert _present(written) == _present(doc)
    else:  # schema 1: upgraded, every original field kept
        assert written["schema"] == 2 and written["upgraded_from_schema"] == 1
        for old, new in zip(doc["results"], written["results"]):
            assert _present({k: v for k, v in new.items() if k in old}) == _present(old) and new["numerics"]


def test_the_schema_is_upgraded_when_a_file_is_read_and_the_input_is_left_alone():
    doc = json.loads((RESULTS / "2026-11-25-h100-cc6c6bc.json").read_text())
    before = copy.deepcopy(doc)
    run = Run.from_json(doc)
    assert doc == before
    jax_f32 = [r for r in run.results if r.runner == "jax-loop" and r.dtype == "float32"]
    assert jax_f32 and {r.numerics for r in jax_f32} == {"float32+tf32"}  # JAX's default precision on a GPU then
    assert all(r.device_key.startswith("gpu") for r in jax_f32)


def test_derive_returns_a_new_run_and_leaves_the_one_it_was_given():
    run = Run.load(RESULTS / "2026-12-02-cpu-quick.json")
    stripped = Run.from_json(run.to_json() | {"results": [r.to_json() | {"derived": None, "validity": None}
                                                           for r in run.results]})
    derived = derive(stripped)
    assert all(r.derived is None for r in stripped.results if r.ok)
    assert all(r.derived is not None and r.validity is not None for r in derived.ok_results)
    # what derive computes again from the measured figures is what the file recorded (and, new since that
    # file was written, which peer row each ratio was taken against)
    again = [dataclasses.replace(r.derived, ratio_peers={}) for r in derived.ok_results]
    assert again == [r.derived for r in run.ok_results]
    assert all(set(r.derived.ratio_peers) == set(r.derived.ratios) for r in derived.ok_results)
    assert derived.validity["status"] == "valid" and derived.ceilings == run.ceilings


def test_unknown_fields_are_kept():
    doc = json.loads((RESULTS / "2026-12-02-cpu-peers.json").read_text())
    doc["from_the_future"] = {"a": 1}
    doc["results"][0]["metrics"]["new_meter"] = [1, 2]
    doc["results"][0]["derived"]["decode_tps_vs_ort"] = 1.5
    written = Run.from_json(doc).to_json()
    assert written["from_the_future"] == {"a": 1}
    assert written["results"][0]["metrics"]["new_meter"] == [1, 2]
    assert written["results"][0]["derived"]["decode_tps_vs_ort"] == 1.5


def test_one_label_names_a_row_wherever_it_is_shown():
    r = Result(id="x", runner="jax", device="gpu", mesh="tp=2", threads=1, model="124M", dtype="float32",
               precision="tf32", batch=1, prompt_len=16, new_tokens=128, status="ok")
    assert label(r) == "jax:gpu[tp=2]@1t"
    assert label(r, numerics=True) == "jax:gpu[tp=2]@1t float32+tf32"
    assert label(r, device=False) == "jax[tp=2]@1t"
    assert r.worker == "jax:gpu[tp=2]@1t+tf32"  # how its probes and parity are keyed
    mixed = Result(id="y", runner="torch", model="124M", dtype="float32", weights="bfloat16", batch=1, prompt_len=16,
                   new_tokens=1, status="ok")
    assert label(mixed, numerics=True) == "torch float32+bfloat16-weights" and mixed.headline_key == "prefill_tps"
