"""The bench's tables: one section per workload (model, numerics, batch, prompt, new tokens), one row
per runner, our rows beside the peers; and the probes with the machine ceilings they set."""

from __future__ import annotations

import itertools

from rich.markup import escape
from rich.table import Table

from .scenarios import where_label


def _fmt(value, spec, empty=""):
    return empty if value is None else format(value, spec)


def _median(metrics, key):
    return metrics.get(key, {}).get("median")


def _ratio(derived: dict, key: str, weights: str | None) -> str:
    """'1.62x', or for a mixed row '1.62x (2.04x vs bfloat16)': against the peer in the row's dtype and,
    where the run has it, the peer all in the weights' dtype."""
    value = derived.get(key)
    text = "" if value is None else f"{value:.2f}x"
    narrow = derived.get(f"{key}_{weights}") if weights else None
    return text + (f" ({narrow:.2f}x vs {weights})" if narrow is not None else "")


def roofline_cell(fraction: float | None) -> str:
    """'56%'; above 100% never bare: '[!] 111%' marks the ceiling as wrong for that row."""
    if fraction is None:
        return ""
    text = f"{fraction * 100:.0f}%" if fraction >= 0.1 else f"{fraction * 100:.1f}%"
    return f"[red]!{text}[/]" if fraction > 1 else text


def results_table(doc: dict) -> Table:
    from .runners import PEERS
    env = doc["environment"]
    machine = env["machine"]
    gpus = ", ".join(g["name"] for g in machine.get("gpus", [])) or "no GPU"
    title = (f"arraygpt bench: {doc['suite'].get('name', '?')} suite, {machine['cpu']} ({machine['cores']} cores), "
             f"{gpus}, {env['date'][:10]}")
    peers_here = [p for p in PEERS if p != "picogpt" and any(r["runner"] == p for r in doc["results"])]
    table = Table(title=title, title_justify="left", caption="medians of the timed repeats; ± is the IQR; "
                  "roof = % of the floor set by the best bandwidth or matmul rate measured on that device in this "
                  "run; !roof over 100%: the ceiling this run measured is below what that row reached, so the "
                  "ceiling is wrong for it (a probe disturbed by other load); xPEER = ratio to that peer on the same "
                  "workload, numerics and device; compile = first call minus a steady one (compiling runners only)",
                  caption_justify="left")
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    with_ci = any(headline_interval(r) for r in ok)
    with_energy = any(r["metrics"].get("energy", {}).get("joules_per_token") is not None for r in ok)
    with_validity = any(r.get("validity", {}).get("status", "valid") != "valid" for r in ok)
    columns = [("runner", "left"), ("prefill tok/s", "right"), ("TTFT ms", "right"), ("decode tok/s", "right"),
               ("ms/token p50/p99", "right"), ("roof", "right")] + [(f"x{p}", "right") for p in peers_here] + [
              ("compile s", "right"), ("RSS MB", "right"), ("device MB", "right"), ("parity", "right")]
    columns += [("95% CI", "right")] * with_ci + [("J/token", "right")] * with_energy + [("validity", "left")] * with_validity
    for name, justify in columns:
        table.add_column(name, justify=justify)
    if with_ci:
        table.caption += "; 95% CI: distribution-free interval of the headline median (6 repeats or more)"
    if with_validity:
        table.caption += "; validity: why a row is not to be trusted (the run's validity line says more)"
    if any(r.get("mesh") for r in doc["results"]):
        table.caption += ("; \\[mesh] rows: the model split over a JAX device mesh; on simulated CPU devices the "
                          "devices share this machine's cores, so their tokens/s say nothing about scaling (no "
                          "roofline; all-reduce bytes per decode step in the JSON)")
    key = lambda r: (r["model"], r.get("numerics", r["dtype"]), r["batch"], r["prompt_len"], r["new_tokens"])  # noqa: E731
    for workload, rows in itertools.groupby(sorted(doc["results"], key=key), key=key):
        model, numerics, batch, prompt_len, new_tokens = workload
        table.add_section()
        table.add_row(f"[bold]{model} {numerics} batch {batch}, prompt {prompt_len}, {new_tokens} new[/]")
        for r in sorted(rows, key=lambda r: (r["runner"] in PEERS, r["runner"], str(r.get("device")))):
            runner = escape(where_label(r["runner"], r.get("device"), r.get("mesh"), r.get("threads")))
            if r["status"] != "ok":
                table.add_row(runner, f"[red]{r['status']}[/]: {escape(r.get('message', ''))[:90]}")
                continue
            m, d = r["metrics"], r.get("derived", {})
            decode = m.get("decode_tps")
            decode_cell = f"{decode['median']:.1f} ±{decode['iqr']:.1f}" if decode else ""
            latency = m.get("token_latency_s")
            latency_cell = f"{latency['p50'] * 1e3:.2f}/{latency['p99'] * 1e3:.2f}" if latency else ""
            # decode runs are judged by bandwidth, single-token ones by the prefill compute ceiling
            roof = d.get("decode_roofline") if decode else d.get("prefill_roofline")
            metric = "decode_tps" if decode else "prefill_tps"
            ratios = [_ratio(d, f"{metric}_vs_{p}", r.get("weights")) for p in peers_here]
            compiled = m.get("compile_s")
            device_bytes = m.get("device_bytes")
            table.add_row(runner, _fmt(_median(m, "prefill_tps"), ".0f"), _fmt(_median(m, "ttft_s") * 1e3, ".0f"),
                          decode_cell, latency_cell, roofline_cell(roof),
                          *ratios,
                          # only for runners that compile (older files did not record it: shown as before)
                          _fmt(compiled, ".1f") if compiled and compiled >= 0.05 and m.get("compiled", True) else "",
                          _fmt(m.get("rss_peak_bytes", 0) / 1e6, ".0f"),
                          _fmt(device_bytes and device_bytes / 1e6, ".0f"), _fmt(d.get("parity_relative"), ".0e"),
                          *[interval_cell(r)] * with_ci, *[energy_cell(m)] * with_energy,
                          *[validity_cell(r)] * with_validity)
    return table


def headline_interval(r: dict) -> dict | None:
    m = r.get("metrics", {})
    return (m.get("decode_tps") if "decode_tps" in m else m.get("prefill_tps", {})).get("ci95")


def interval_cell(r: dict) -> str:
    interval = headline_interval(r)
    return f"±{interval['half_width']:.1%}" if interval else ""


def energy_cell(m: dict) -> str:
    energy = m.get("energy", {})
    return _fmt(energy.get("joules_per_token"), ".3g", "no meter")


def validity_cell(r: dict) -> str:
    """'' for a valid row; 'unsteady: drift 33%, steal 21%' (every reason, short) otherwise."""
    validity = r.get("validity", {})
    if validity.get("status", "valid") == "valid":
        return ""
    colour = "yellow" if validity["status"] == "unsteady" else "red"
    return f"[{colour}]{validity['status']}[/]: {escape(', '.join(validity.get('short', validity['reasons'])))}"


def probes_table(doc: dict) -> Table:
    """Every probe of the run, and which one set each ceiling of the machine (marked *)."""
    ceilings = doc.get("ceilings", {})
    set_by = {(device, "bandwidth", c["bandwidth"]["set_by"]) for device, c in ceilings.items() if c["bandwidth"]}
    set_by |= {(device, key, m["set_by"]) for device, c in ceilings.items() for key, m in c["matmul"].items()}
    table = Table(title="roofline probes (this run); * = the machine ceiling every row on that device is measured "
                  "against", title_justify="left")
    for name in ("runner", "products", "device", "bandwidth GB/s", "matmul GFLOP/s"):
        table.add_column(name, justify="right" if "/" in name else "left")
    for runner, by_key in doc["probes"].items():
        for key, p in by_key.items():
            if "bandwidth_bytes_s" in p:
                device = p.get("device_key", "cpu")
                who = f"{runner} {p.get('dtype', key)}"
                star_bw = "*" if (device, "bandwidth", who) in set_by else ""
                star_mm = "*" if (device, key, who) in set_by else ""
                table.add_row(runner, key, escape(p.get("device", "")), f"{p['bandwidth_bytes_s'] / 1e9:.1f}{star_bw}",
                              f"{p['matmul_flops_s'] / 1e9:.0f}{star_mm}")
            else:
                table.add_row(runner, key, "", f"[red]{escape(p.get('message', 'failed'))}[/]", "")
    return table
