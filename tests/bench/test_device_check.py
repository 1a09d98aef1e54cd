"""The GPU check script (benchmarks/gpu/check.sh) dry-runs on the CPU, so it cannot rot between GPU windows.
(This file's name and tests do not say "gpu": `pytest -m gpu`, which the script runs, must not run them.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_device_check_dry_runs_every_part_on_the_cpu(tmp_path):
    env = os.environ | {"GPU_CHECK_DEVICE": "cpu", "OUT": str(tmp_path), "PYTHON": sys.executable}
    result = subprocess.run(["bash", "benchmarks/gpu/check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    parts = dict(line.split()[:2] for line in (tmp_path / "parts.txt").read_text().splitlines())
    assert list(parts) == ["install", "versions", "tests", "parity", "bench", "profile", "inductor"]
    assert set(parts.values()) == {"0"}, (parts, (tmp_path / "check.log").read_text()[-3000:])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["bench.json", "check.log", "inductor.json", "parity.json", "parts.txt", "profile.json",
                     "summary.md", "versions.txt"]  # 8 files: the most the device tool brings back
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["complete"] is True and {r["dtype"] for r in bench["results"]} == {"float32", "bfloat16"}
    assert "## GPU check" in result.stdout and "| bench | ok |" in result.stdout  # the table, printed last
    assert all("ms_per_step" in row for row in json.loads((tmp_path / "profile.json").read_text()))


def test_the_gpu_targets_are_read_off_gpt2s_rows_not_the_llama_familys():
    """The GPU check times SmolLM2 135M beside GPT-2 124M (issue 27); issue 26's targets are 124M's."""
    from arraygpt.benchmarks.gpu.summary import target_lines
    row = dict(status="ok", prompt_len=16, new_tokens=128, runner="torch", numerics="float32", batch=1,
               decode_tps=None, prefill_tps=None, vs_hf=None)
    rows = [row | {"model": "smollm2-135m", "decode_tps": 9999.0, "vs_hf-static": 9.0},
            row | {"model": "124M", "decode_tps": 750.0, "vs_hf-static": 1.5}]
    line = next(l for l in target_lines(rows) if l.startswith("| torch recorded float32 b1 |"))
    assert line == "| torch recorded float32 b1 | 750 | 1,500 | 0.50 |"
