"""`arraygpt report`: committed runs of two machines (this CPU, the H100) side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arraygpt.cli import main

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
CPU_RUN = RESULTS / "2026-11-25-cpu-quick.json"
GPU_RUN = RESULTS / "2026-11-25-h100-cc6c6bc.json"


def test_report_puts_a_cpu_run_beside_a_gpu_run(tmp_path, capsys):
    png = tmp_path / "report.png"
    assert main(["report", str(CPU_RUN), str(GPU_RUN), "-o", str(png)]) == 0
    out = capsys.readouterr().out
    cpu = json.loads(CPU_RUN.read_text())["environment"]["machine"]["cpu"]
    assert f"**{cpu} (" in out and "**NVIDIA H100 80GB HBM3, 2026-11-25**" in out
    section = out.split("#### 124M, batch 1, prompt 16, 128 new: decode tokens/s")[1].split("####")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    devices = {(row[1], row[2]) for row in rows}
    assert ("numpy", "cpu") in devices and ("jax-loop", "gpu:0") in devices and ("hf (peer)", "cpu") in devices
    # The H100 run predates the precision field: its JAX float32 rows ran at JAX's default (TF32-like).
    assert {row[3] for row in rows if row[1] == "jax-loop" and row[2] == "gpu:0"} == {"float16", "float32+tf32"}
    for row in rows:
        if row[5]:
            assert 0 < float(row[5].rstrip("%")) <= 100  # the machine's floor: never above it
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.mark.parametrize("content, message", [
    ({"kind": "arraygpt-parity", "cells": []}, "not an arraygpt bench result"),
    ([1, 2, 3], "not an arraygpt bench result"),
    ("{ not json", "not a readable JSON result file"),
])
def test_report_refuses_a_file_that_is_not_a_bench_result(tmp_path, capsys, content, message):
    path = tmp_path / "other.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["report", str(CPU_RUN), str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_plot_draws_every_numerics_of_the_committed_runs(tmp_path, monkeypatch):
    """A line per runner x device x numerics: the mixed run's float32, bfloat16 and bfloat16-weights rows,
    the H100 run's float16 and (schema 1, read as report reads it) float32+tf32 rows; peers dashed."""
    import matplotlib.figure
    from arraygpt.benchmarks.present.plot import plot_results

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    labels = {}
    for name in ("2026-11-25-cpu-mixed.json", "2026-11-25-h100-cc6c6bc.json"):
        plot_results(json.loads((RESULTS / name).read_text()), tmp_path / "x.png")
        fig = drawn.pop()
        lines = [line for ax in fig.axes for line in ax.get_lines()]
        labels[name] = {line.get_label(): line.get_linestyle() for line in lines}
        labels[name + " title"] = fig._suptitle.get_text()
    mixed = labels["2026-11-25-cpu-mixed.json"]
    for label in ("jax-loop float32", "jax-loop bfloat16", "jax-loop float32+bfloat16-weights", "torch bfloat16"):
        assert mixed[label] == "-", sorted(mixed)
    assert mixed["hf float32"] == mixed["hf bfloat16"] == "--"
    h100 = labels["2026-11-25-h100-cc6c6bc.json"]
    assert "jax-loop:gpu float32+tf32" in h100 and "jax-loop:gpu float16" in h100
    assert "jax-loop:gpu float32" not in h100  # never the IEEE label on TF32-like rows
    assert "NVIDIA H100" in labels["2026-11-25-h100-cc6c6bc.json title"]
    assert "AMD EPYC" in labels["2026-11-25-cpu-mixed.json title"]


def test_a_ratio_to_an_unsteady_row_carries_the_doubt(tmp_path):
    """A ratio is as doubtful as the less trusted of its two rows: '?' beside it in the report and the bench
    table, whether our row or the peer's was disturbed (here the hf rows, given other load on purpose)."""
    import json
    from pathlib import Path

    from arraygpt.benchmarks.records import Run
    from arraygpt.benchmarks.present.report import markdown
    from arraygpt.benchmarks.present.tables import results_table
    from rich.console import Console

    source = Path(__file__).resolve().parents[2] / "benchmarks/results/2026-12-03-cpu-quick-every-peer.json"
    doc = json.loads(source.read_text())
    for r in doc["results"]:
        if r["runner"] == "hf" and r["status"] == "ok" and r["batch"] == 8:
            load = r["metrics"]["load"]
            ticks = load["ticks"] | {"other": int(1.9 * load["ticks"]["per_s"] * load["wall_s"])}
            r["metrics"]["load"] = load | {"other_cores": 1.9, "ticks": ticks}  # disturbed: unsteady
    disturbed = tmp_path / "disturbed.json"
    disturbed.write_text(json.dumps(doc))
    run = Run.load(disturbed)
    text = markdown([run], [str(disturbed)])
    rows = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("####"):
            heading = line
        elif line.startswith("| ") and "| numpy |" in line:
            rows[heading] = line
    batch8 = [line for head, line in rows.items() if "batch 8" in head]
    batch1 = [line for head, line in rows.items() if "batch 1" in head]
    assert batch8 and all("x?" in line for line in batch8)  # valid numpy row, unsteady hf row
    assert batch1 and not any("?" in line for line in batch1)  # both valid: no doubt
    console = Console(width=100, record=True)
    console.print(results_table(run))
    import re
    assert re.search(r"\d\.\d\d\?", console.export_text())


def test_every_committed_runs_tables_read_whole_in_100_columns():
    """Issue 29: group headings on their own line, ids and figures whole (nothing cut to an ellipsis), reasons under
    the table, within 100 columns, for every bench file committed (CPU, GPU, peers, meshes)."""
    from pathlib import Path

    from arraygpt.benchmarks.records import Run
    from arraygpt.benchmarks.present.tables import results_table
    from rich.console import Console

    checked = 0
    for path in sorted((Path(__file__).resolve().parents[2] / "benchmarks/results").glob("*.json")):
        try:
            run = Run.load(path)
        except Exception:  # a study's file, not a bench result
            continue
        console = Console(width=100, record=True, file=open("/dev/null", "w"))
        console.print(results_table(run))
        text = console.export_text()
        assert "…" not in text and max(map(len, text.splitlines())) <= 100, path.name
        for r in run.results:
            assert f"{r.model} {r.numerics}, batch {r.batch}, prompt {r.prompt_len}, {r.new_tokens} new" in text
        checked += 1
    assert checked >= 10


def test_a_run_made_with_an_instruction_set_capped_says_so(tmp_path, capsys, monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU (or another llama.cpp build) is recorded with the run and
    printed where its figures are read: the table's title and the report's Runs line. Unset, nothing is said."""
    from rich.console import Console

    from arraygpt.benchmarks.measure.environment import environment
    from arraygpt.benchmarks.present.tables import results_table
    from arraygpt.benchmarks.records.run import Run

    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "")  # set but empty: not a setting
    recorded = environment()["kernel_settings"]
    assert recorded.get("ATEN_CPU_CAPABILITY") == "avx2" and "DNNL_MAX_CPU_ISA" not in recorded
    doc = json.loads(CPU_RUN.read_text())
    for settings, said in (({}, False), ({"ATEN_CPU_CAPABILITY": "avx2"}, True)):
        doc["environment"]["kernel_settings"] = settings
        path = tmp_path / "run.json"
        path.write_text(json.dumps(doc))
        assert main(["report", str(path)]) == 0
        runs_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Runs: "))
        assert ("kernel settings: `ATEN_CPU_CAPABILITY=avx2`" in runs_line) == said
        console = Console(record=True, width=120)
        console.print(results_table(Run.load(path)))
        assert ("kernel settings: ATEN_CPU_CAPABILITY=avx2" in console.export_text()) == said
    doc["environment"]["kernel_settings"] = ["ATEN_CPU_CAPABILITY=avx2"]
    path.write_text(json.dumps(doc))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "kernel_settings" in err and len(err.strip().splitlines()) == 1
