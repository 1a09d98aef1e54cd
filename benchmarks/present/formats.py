"""Bench results as flat rows for spreadsheets and dashboards: CSV, JSON lines and a Markdown table.

One row per scenario: what ran (runner, device, mesh, numerics, workload), how it ended (status), and its
figures (medians, per-token latency percentiles, memory, % of roofline, parity, ratios to peers). Floats
are written with repr, so a CSV or JSON-lines row reads back to the JSON's numbers exactly.
"""

from __future__ import annotations

import csv
import io
import json

from ..judge.derive import derive
from ..records import Derived, Metrics
from ..runners import PEERS

FORMATS = ("csv", "jsonl", "md")
COLUMNS = ["run", "id", "runner", "device", "device_key", "mesh", "threads", "numerics", "model", "batch",
           "prompt_len", "new_tokens", "status", "validity", "prefill_tps", "ttft_s", "decode_tps", "decode_tps_iqr",
           "ci95_low", "ci95_high", "repeats", "latency_p50_s", "latency_p90_s", "latency_p99_s", "e2e_s", "first_call_s", "compile_s", "shape",
           "rss_peak_bytes", "device_bytes", "roofline", "parity_relative", "token_agreement", "joules_per_token",
           "watts", "other_cores", "steal"] + [f"vs_{peer}" for peer in PEERS] + ["validity_reasons", "message"]


def flat_rows(run, name: str = "") -> list[dict]:
    run = derive(run)
    rows = []
    for r in run.results:
        m = r.metrics if r.ok else Metrics()
        d = r.derived or Derived()
        metric, energy, load = r.metric, m.energy or {}, m.load or {}
        interval = (r.headline.ci95 if r.ok and r.headline else None) or {}
        latency = m.token_latency_s
        row = {"run": name, "id": r.id, "runner": r.runner, "device": r.device, "device_key": r.device_key,
               "mesh": r.mesh, "threads": r.threads, "numerics": r.numerics, "model": r.model, "batch": r.batch,
               "prompt_len": r.prompt_len, "new_tokens": r.new_tokens, "status": r.status,
               "validity": r.validity.status if r.validity else None,
               "prefill_tps": m.median("prefill_tps"), "ttft_s": m.median("ttft_s"), "decode_tps": m.median("decode_tps"),
               "decode_tps_iqr": m.decode_tps.iqr if m.decode_tps else None,
               "ci95_low": interval.get("low"), "ci95_high": interval.get("high"),
               "repeats": len(r.repeats) if isinstance(r.repeats, (list, tuple)) else None,
               "latency_p50_s": latency and latency.p50, "latency_p90_s": latency and latency.p90,
               "latency_p99_s": latency and latency.p99, "e2e_s": m.median("e2e_s"),
               "first_call_s": m.first_call_s, "compile_s": m.compile_s if m.compiles else None,
               "shape": shape_cell(m.shape),
               "rss_peak_bytes": m.rss_peak_bytes, "device_bytes": m.device_bytes,
               "roofline": d.roofline(metric), "parity_relative": d.parity_relative,
               "token_agreement": d.token_agreement, "joules_per_token": energy.get("joules_per_token"),
               "watts": energy.get("watts"), "other_cores": load.get("other_cores"), "steal": load.get("steal"),
               "validity_reasons": "; ".join(r.validity.reasons) if r.validity and r.validity.reasons else None,
               "message": r.message}
        row |= {f"vs_{peer}": d.ratio(metric, peer) for peer in PEERS}
        rows.append(row)
    return rows


def shape_cell(shape: dict | None) -> str | None:
    """'p16 s192 l128': the prompt columns, cache slots and decode-loop room a row ran at (its shape
    bucket on a compiling backend)."""
    if not shape:
        return None
    return f"p{shape['prompt_len']} s{shape['n_slots']} l{shape['loop_steps']}"


def _cell(value) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return out.getvalue()


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps({k: row.get(k) for k in COLUMNS}) + "\n" for row in rows)


def to_markdown(rows: list[dict]) -> str:
    shown = [c for c in COLUMNS if any(row.get(c) not in (None, "") for row in rows)]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = []
        for c in shown:
            value = row.get(c)
            cells.append("" if value is None else f"{value:.4g}" if isinstance(value, float) else
                         str(value).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(rows: list[dict], fmt: str) -> str:
    return {"csv": to_csv, "jsonl": to_jsonl, "md": to_markdown}[fmt](rows)
