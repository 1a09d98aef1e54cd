"""The bench table: one section per workload, one row per runner, our rows beside the peers."""

from __future__ import annotations

import itertools

from rich.markup import escape
from rich.table import Table


def _fmt(value, spec, empty=""):
    return empty if value is None else format(value, spec)


def _median(metrics, key):
    return metrics.get(key, {}).get("median")


def results_table(doc: dict) -> Table:
    env = doc["environment"]
    machine = env["machine"]
    gpus = ", ".join(g["name"] for g in machine.get("gpus", [])) or "no GPU"
    title = (f"arraygpt bench: {doc['suite'].get('name', '?')} suite, {machine['cpu']} ({machine['cores']} cores), "
             f"{gpus}, {env['date'][:10]}")
    table = Table(title=title, title_justify="left", caption="medians of the timed repeats; ± is the IQR; "
                  "roof = % of the floor set by the bandwidth or matmul rate measured in this run; "
                  "xHF = ratio to Hugging Face transformers on the same workload", caption_justify="left")
    for name, justify in [("runner", "left"), ("prefill tok/s", "right"), ("TTFT ms", "right"),
                          ("decode tok/s", "right"), ("ms/token p50/p99", "right"), ("roof", "right"),
                          ("xHF", "right"), ("RSS MB", "right"), ("parity", "right")]:
        table.add_column(name, justify=justify)
    key = lambda r: (r["model"], r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"])  # noqa: E731
    for workload, rows in itertools.groupby(sorted(doc["results"], key=key), key=key):
        model, dtype, batch, prompt_len, new_tokens = workload
        table.add_section()
        table.add_row(f"[bold]{model} {dtype} batch {batch}, prompt {prompt_len}, {new_tokens} new[/]")
        for r in sorted(rows, key=lambda r: (r["runner"] in ("hf", "picogpt"), r["runner"])):
            runner = r["runner"] + (f":{r['device']}" if r.get("device") else "")
            if r["status"] != "ok":
                table.add_row(runner, f"[red]{r['status']}[/]: {escape(r.get('message', ''))[:90]}")
                continue
            m, d = r["metrics"], r.get("derived", {})
            decode = m.get("decode_tps")
            decode_cell = f"{decode['median']:.1f} ±{decode['iqr']:.1f}" if decode else ""
            latency = m.get("token_latency_s")
            latency_cell = f"{latency['p50'] * 1e3:.1f}/{latency['p99'] * 1e3:.1f}" if latency else ""
            # decode runs are judged by bandwidth, single-token ones by the prefill compute ceiling
            roof = d.get("decode_roofline") if decode else d.get("prefill_roofline")
            ratio = d.get("decode_tps_vs_hf") if decode else d.get("prefill_tps_vs_hf")
            table.add_row(runner, _fmt(_median(m, "prefill_tps"), ".0f"), _fmt(_median(m, "ttft_s") * 1e3, ".0f"),
                          decode_cell, latency_cell, _fmt(roof and roof * 100, ".0f") + ("%" if roof else ""),
                          _fmt(ratio, ".2f") + ("x" if ratio else ""), _fmt(m.get("rss_peak_bytes", 0) / 1e6, ".0f"),
                          _fmt(d.get("parity_relative"), ".0e"))
    return table


def probes_table(doc: dict) -> Table:
    table = Table(title="roofline probes (this run)", title_justify="left")
    for name in ("runner", "dtype", "device", "bandwidth GB/s", "matmul GFLOP/s"):
        table.add_column(name, justify="right" if "/" in name else "left")
    for runner, by_dtype in doc["probes"].items():
        for dtype, p in by_dtype.items():
            if "bandwidth_bytes_s" in p:
                table.add_row(runner, dtype, escape(p.get("device", "")), f"{p['bandwidth_bytes_s'] / 1e9:.1f}",
                              f"{p['matmul_flops_s'] / 1e9:.0f}")
            else:
                table.add_row(runner, dtype, "", f"[red]{escape(p.get('message', 'failed'))}[/]", "")
    return table
