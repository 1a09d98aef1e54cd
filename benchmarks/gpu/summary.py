"""The GPU check's closing table: `python -m arraygpt.benchmarks.gpu.summary OUT` (Markdown, printed last)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from arraygpt.benchmarks.present.formats import flat_rows
from arraygpt.benchmarks.records import Run
from arraygpt.engine.llama.config import LLAMA_PRESETS

# Issue 26's targets (124M, 16-token prompt, 128 new tokens; 8 x 1024 prefill): (what, runner, numerics, batch,
# figure, target). figure: decode or prefill tokens/s, or a ratio to a peer of the same run ("vs_hf-static").
TARGETS = [
    ("torch recorded float32 b1", "torch", "float32", 1, "decode_tps", 1500),
    ("torch recorded bfloat16 b1", "torch", "bfloat16", 1, "decode_tps", 2500),
    ("torch recorded float32 b8", "torch", "float32", 8, "decode_tps", 10000),
    ("cupy recorded float32 b1", "cupy", "float32", 1, "decode_tps", 1000),
    ("cupy recorded float16 b1", "cupy", "float16", 1, "decode_tps", 1500),
    ("cupy recorded float32 b8", "cupy", "float32", 8, "decode_tps", 6000),
    ("jax-loop float32 (IEEE) b1", "jax-loop", "float32", 1, "decode_tps", 2500),
    ("jax-loop bfloat16 b1", "jax-loop", "bfloat16", 1, "decode_tps", 4000),
    ("jax-loop bfloat16 b8", "jax-loop", "bfloat16", 8, "decode_tps", 25000),
    ("torch recorded float32 b1 / hf-static", "torch", "float32", 1, "vs_hf-static", 3.0),
    ("cupy recorded float32 b1 / hf-static", "cupy", "float32", 1, "vs_hf-static", 3.0),
    ("torch recorded float32 b8 / hf-static", "torch", "float32", 8, "vs_hf-static", 3.0),
    ("cupy recorded float32 b8 / hf-static", "cupy", "float32", 8, "vs_hf-static", 3.0),
]
PREFILL_TARGET = 1.5  # the best backend's 8 x 1024 bfloat16 prefill over HF eager's


def target_lines(rows: list[dict]) -> list[str]:
    """Each target with the measured value and its distance (measured / target); '-' where no row measured it."""
    lines = ["", "| target | measured | target | measured / target |", "|---|---:|---:|---:|"]
    # GPT-2's rows: the Llama-family row (SmolLM2 at batch 1) is measured beside them, not held to their targets
    decode = [r for r in rows if r["status"] == "ok" and r["prompt_len"] == 16 and r["new_tokens"] == 128
              and r["model"] not in LLAMA_PRESETS]
    for what, runner, numerics, batch, figure, target in TARGETS:
        found = [r[figure] for r in decode if (r["runner"], r["numerics"], r["batch"]) == (runner, numerics, batch)
                 and r[figure] is not None]
        value = found[0] if found else None
        lines.append(_target_row(what, value, target, figure.startswith("vs_")))
    prefill = [r["vs_hf"] for r in rows if r["status"] == "ok" and r["prompt_len"] == 1024 and r["batch"] == 8
               and r["numerics"] == "bfloat16" and r["vs_hf"] is not None]
    lines.append(_target_row("best prefill 8x1024 bfloat16 / hf eager", max(prefill) if prefill else None,
                             PREFILL_TARGET, True))
    return lines


def _target_row(what: str, value, target, ratio: bool) -> str:
    spec = ".2f" if ratio else ",.0f"
    shown = "-" if value is None else format(value, spec) + ("x" if ratio else "")
    distance = "-" if value is None else f"{value / target:.2f}" + (" (met)" if value >= target else "")
    return f"| {what} | {shown} | {format(target, spec)}{'x' if ratio else ''} | {distance} |"


def main(out: str) -> int:
    out = Path(out)
    lines = ["## GPU check", "", "| part | exit | seconds |", "|---|---:|---:|"]
    parts = (out / "parts.txt").read_text().split("\n") if (out / "parts.txt").exists() else []
    for line in filter(None, parts):
        name, code, seconds = line.split()
        lines.append(f"| {name} | {'ok' if code == '0' else 'TIMEOUT' if code == '124' else code} | {seconds} |")
    bench = out / "bench.json"
    if bench.exists():
        run = Run.load(bench)
        lines += ["", "| scenario | status | tok/s | % roofline | x hf | x hf-static | parity |", "|---|---|---:|---:|---:|---:|---:|"]
        for row in flat_rows(run):
            tps = row["decode_tps"] or row["prefill_tps"]
            fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
            lines.append(f"| {row['id']} | {row['status']} | {fmt(tps, ',.0f')} | {fmt(row['roofline'], '.0%')} | "
                         f"{fmt(row['vs_hf'], '.2f')} | {fmt(row['vs_hf-static'], '.2f')} | "
                         f"{fmt(row['parity_relative'], '.0e')} |")
        lines.append(f"\ncomplete: {run.complete}")
        lines += target_lines(flat_rows(run))
    parity = out / "parity.json"
    if parity.exists():
        cells = json.loads(parity.read_text())["cells"]
        failed = [c for c in cells if c["status"] == "fail"]
        lines.append(f"parity: {sum(c['status'] == 'pass' for c in cells)} pass, {len(failed)} fail, "
                     f"{sum(c['status'] == 'skipped' for c in cells)} skipped"
                     + "".join(f"; FAIL {c['backend']} {c['dtype']}" for c in failed))
    profiles = [out / name for name in ("profile.json", "inductor.json") if (out / name).exists()]
    if profiles:
        lines += ["", "| profile | ms/step | launches/step (GPU: CUDA kernels; CPU: torch operators) |", "|---|---:|---:|"]
        for row in [row for path in profiles for row in json.loads(path.read_text())]:
            ms, launches = row.get("ms_per_step"), row.get("launches_per_step")
            lines.append(f"| {row['backend']} {row['dtype']} b{row['batch']} | "
                         f"{row.get('error') or format(ms, '.3f')} | {'' if launches is None else format(launches, '.0f')} |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
