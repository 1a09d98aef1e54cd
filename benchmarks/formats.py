"""Bench results as flat rows for spreadsheets and dashboards: CSV, JSON lines and a Markdown table.

One row per scenario: what ran (runner, device, mesh, numerics, workload), how it ended (status), and its
figures (medians, per-token latency percentiles, memory, % of roofline, parity, ratios to peers). Floats
are written with repr, so a CSV or JSON-lines row reads back to the JSON's numbers exactly.
"""

from __future__ import annotations

import csv
import io
import json

from .derive import derive
from .runners import PEERS

FORMATS = ("csv", "jsonl", "md")
COLUMNS = ["run", "id", "runner", "device", "device_key", "mesh", "threads", "numerics", "model", "batch",
           "prompt_len", "new_tokens", "status", "validity", "prefill_tps", "ttft_s", "decode_tps", "decode_tps_iqr",
           "ci95_low", "ci95_high", "repeats", "latency_p50_s", "latency_p90_s", "latency_p99_s", "e2e_s", "compile_s",
           "rss_peak_bytes", "device_bytes", "roofline", "parity_relative", "token_agreement", "joules_per_token",
           "watts", "other_cores", "steal"] + [f"vs_{peer}" for peer in PEERS] + ["validity_reasons", "message"]


def _median(metrics: dict, key: str):
    value = metrics.get(key)
    return value.get("median") if isinstance(value, dict) else None


def flat_rows(doc: dict, run: str = "") -> list[dict]:
    derive(doc)
    rows = []
    for r in doc.get("results", []):
        m, d = r.get("metrics", {}), r.get("derived", {})
        metric = "decode" if "decode_tps" in m else "prefill"
        latency, load, energy = m.get("token_latency_s", {}), m.get("load", {}), m.get("energy", {})
        interval = (m.get(f"{metric}_tps") or {}).get("ci95") or {}
        validity = r.get("validity", {})
        row = {"run": run, "id": r["id"], "runner": r["runner"], "device": r.get("device"),
               "device_key": r.get("device_key"), "mesh": r.get("mesh"), "threads": r.get("threads"), "numerics": r.get("numerics", r["dtype"]),
               "model": r["model"], "batch": r["batch"], "prompt_len": r["prompt_len"], "new_tokens": r["new_tokens"],
               "status": r["status"], "validity": validity.get("status"), "prefill_tps": _median(m, "prefill_tps"), "ttft_s": _median(m, "ttft_s"),
               "decode_tps": _median(m, "decode_tps"), "decode_tps_iqr": (m.get("decode_tps") or {}).get("iqr"),
               "ci95_low": interval.get("low"), "ci95_high": interval.get("high"),
               "repeats": len(r["repeats"]) if isinstance(r.get("repeats"), list) else None,
               "latency_p50_s": latency.get("p50"), "latency_p90_s": latency.get("p90"),
               "latency_p99_s": latency.get("p99"), "e2e_s": _median(m, "e2e_s"),
               "compile_s": m.get("compile_s") if m.get("compiled", True) else None,
               "rss_peak_bytes": m.get("rss_peak_bytes"), "device_bytes": m.get("device_bytes"),
               "roofline": d.get(f"{metric}_roofline"), "parity_relative": d.get("parity_relative"),
               "token_agreement": d.get("token_agreement"), "joules_per_token": energy.get("joules_per_token"),
               "watts": energy.get("watts"), "other_cores": load.get("other_cores"), "steal": load.get("steal"),
               "validity_reasons": "; ".join(validity.get("reasons", [])) or None, "message": r.get("message")}
        row |= {f"vs_{peer}": d.get(f"{metric}_tps_vs_{peer}") for peer in PEERS}
        rows.append(row)
    return rows


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
