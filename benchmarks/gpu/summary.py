"""The GPU check's closing table: `python -m benchmarks.gpu.summary OUT` (Markdown, printed last)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: str) -> int:
    out = Path(out)
    lines = ["## GPU check", "", "| part | exit | seconds |", "|---|---:|---:|"]
    parts = (out / "parts.txt").read_text().split("\n") if (out / "parts.txt").exists() else []
    for line in filter(None, parts):
        name, code, seconds = line.split()
        lines.append(f"| {name} | {'ok' if code == '0' else 'TIMEOUT' if code == '124' else code} | {seconds} |")
    bench = out / "bench.json"
    if bench.exists():
        from benchmarks.formats import flat_rows
        from benchmarks.records import Run
        run = Run.load(bench)
        lines += ["", "| scenario | status | tok/s | % roofline | x hf | x hf-static | parity |", "|---|---|---:|---:|---:|---:|---:|"]
        for row in flat_rows(run):
            tps = row["decode_tps"] or row["prefill_tps"]
            fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
            lines.append(f"| {row['id']} | {row['status']} | {fmt(tps, ',.0f')} | {fmt(row['roofline'], '.0%')} | "
                         f"{fmt(row['vs_hf'], '.2f')} | {fmt(row['vs_hf-static'], '.2f')} | "
                         f"{fmt(row['parity_relative'], '.0e')} |")
        lines.append(f"\ncomplete: {run.complete}")
    parity = out / "parity.json"
    if parity.exists():
        cells = json.loads(parity.read_text())["cells"]
        failed = [c for c in cells if c["status"] == "fail"]
        lines.append(f"parity: {sum(c['status'] == 'pass' for c in cells)} pass, {len(failed)} fail, "
                     f"{sum(c['status'] == 'skipped' for c in cells)} skipped"
                     + "".join(f"; FAIL {c['backend']} {c['dtype']}" for c in failed))
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
