"""The bench's tables: one section per workload (model, numerics, batch, prompt, new tokens), one row
per runner, our rows beside the peers; and the probes with the machine ceilings they set."""

from __future__ import annotations

import itertools

from rich.markup import escape
from rich.table import Table

from .records import Result, Run, label


def _fmt(value, spec, empty=""):
    return empty if value is None else format(value, spec)


def _ratio(r: Result, peer: str, run: Run) -> str:
    """'1.62x', or for a mixed row '1.62x (2.04x vs bfloat16)': against the peer in the row's dtype and,
    where the run has it, the peer all in the weights' dtype. A ratio whose row or peer row is unsteady or
    invalid carries a '?'."""
    metric, weights = r.metrics.metric, r.weights
    value = r.derived.ratio(metric, peer)
    doubt = lambda narrow=None: "?" if run.ratio_doubtful(r, metric, peer, narrow) else ""  # noqa: E731
    text = "" if value is None else f"{value:.2f}x{doubt()}"
    narrow = r.derived.ratio(metric, peer, weights) if weights else None
    return text + (f" ({narrow:.2f}x{doubt(weights)} vs {weights})" if narrow is not None else "")


def roofline_cell(fraction: float | None) -> str:
    """'56%'; above 100% never bare: '[!] 111%' marks the ceiling as wrong for that row."""
    if fraction is None:
        return ""
    text = f"{fraction * 100:.0f}%" if fraction >= 0.1 else f"{fraction * 100:.1f}%"
    return f"[red]!{text}[/]" if fraction > 1 else text


def results_table(run: Run) -> Table:
    from .derive import derive
    from .runners import PEERS
    run = derive(run)
    machine = run.machine
    gpus = ", ".join(g["name"] for g in machine.get("gpus", [])) or "no GPU"
    title = (f"arraygpt bench: {run.suite.get('name', '?')} suite, {machine['cpu']} ({machine['cores']} cores), "
             f"{gpus}, {run.date}")
    peers_here = [p for p in PEERS if p != "picogpt" and any(r.runner == p for r in run.results)]
    table = Table(title=title, title_justify="left", caption="medians of the timed repeats; ± is the IQR; "
                  "roof = % of the floor set by the best bandwidth or matmul rate measured on that device in this "
                  "run; !roof over 100%: the ceiling this run measured is below what that row reached, so the "
                  "ceiling is wrong for it (a probe disturbed by other load); xPEER = ratio to that peer on the same "
                  "workload, numerics and device (? : the row or the peer's is unsteady or invalid, and so is the ratio); compile = first call minus a steady one (compiling runners only; they run "
                  "each call at its shape bucket, so a scenario in a bucket that an earlier one of the same runner "
                  "compiled shows none)",
                  caption_justify="left")
    ok = run.ok_results
    with_ci = any(r.metrics.headline.ci95 for r in ok)
    with_energy = any((r.metrics.energy or {}).get("joules_per_token") is not None for r in ok)
    with_validity = any(r.validity and r.validity.status != "valid" for r in ok)
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
    if any(r.mesh for r in run.results):
        table.caption += ("; \\[mesh] rows: the model split over a JAX device mesh; on simulated CPU devices the "
                          "devices share this machine's cores, so their tokens/s say nothing about scaling (no "
                          "roofline; all-reduce bytes per decode step in the JSON)")
    key = lambda r: r.workload  # noqa: E731
    for workload, rows in itertools.groupby(sorted(run.results, key=key), key=key):
        model, numerics, batch, prompt_len, new_tokens = workload
        table.add_section()
        table.add_row(f"[bold]{model} {numerics} batch {batch}, prompt {prompt_len}, {new_tokens} new[/]")
        for r in sorted(rows, key=lambda r: (r.is_peer, r.runner, str(r.device))):
            runner = escape(label(r))
            if not r.ok:
                table.add_row(runner, f"[red]{r.status}[/]: {escape(r.message or '')[:90]}")
                continue
            m, d = r.metrics, r.derived
            decode = m.decode_tps
            decode_cell = f"{decode.median:.1f} ±{decode.iqr:.1f}" if decode else ""
            latency = m.token_latency_s
            latency_cell = f"{latency.p50 * 1e3:.2f}/{latency.p99 * 1e3:.2f}" if latency else ""
            # decode runs are judged by bandwidth, single-token ones by the prefill compute ceiling
            roof = d.roofline(m.metric)
            compiled = m.compile_s
            device_bytes = m.device_bytes
            table.add_row(runner, _fmt(m.median("prefill_tps"), ".0f"), _fmt(m.median("ttft_s") * 1e3, ".0f"),
                          decode_cell, latency_cell, roofline_cell(roof),
                          *[_ratio(r, p, run) for p in peers_here],
                          # only for runners that compile (older files did not record it: shown as before)
                          _fmt(compiled, ".1f") if compiled and compiled >= 0.05 and m.compiles else "",
                          _fmt((m.rss_peak_bytes or 0) / 1e6, ".0f"),
                          _fmt(device_bytes and device_bytes / 1e6, ".0f"), _fmt(d.parity_relative, ".0e"),
                          *[interval_cell(r)] * with_ci, *[energy_cell(r)] * with_energy,
                          *[validity_cell(r)] * with_validity)
    return table


def interval_cell(r: Result) -> str:
    interval = r.metrics.headline.ci95
    return f"±{interval['half_width']:.1%}" if interval else ""


def energy_cell(r: Result) -> str:
    return _fmt((r.metrics.energy or {}).get("joules_per_token"), ".3g", "no meter")


def validity_cell(r: Result) -> str:
    """'' for a valid row; 'unsteady: drift 33%, steal 21%' (every reason, short) otherwise."""
    validity = r.validity
    if validity is None or validity.status == "valid":
        return ""
    colour = "yellow" if validity.status == "unsteady" else "red"
    return f"[{colour}]{validity.status}[/]: {escape(', '.join(validity.short or validity.reasons))}"


def probes_table(run: Run) -> Table:
    """Every probe of the run, and which one set each ceiling of the machine (marked *)."""
    from .derive import derive
    run = derive(run)
    ceilings = run.ceilings
    set_by = {(device, "bandwidth", c["bandwidth"]["set_by"]) for device, c in ceilings.items() if c["bandwidth"]}
    set_by |= {(device, key, m["set_by"]) for device, c in ceilings.items() for key, m in c["matmul"].items()}
    table = Table(title="roofline probes (this run); * = the machine ceiling every row on that device is measured "
                  "against", title_justify="left")
    for name in ("runner", "products", "device", "bandwidth GB/s", "matmul GFLOP/s"):
        table.add_column(name, justify="right" if "/" in name else "left")
    for runner, by_key in run.probes.items():
        for key, p in by_key.items():
            if p.measured:
                who = f"{runner} {p.dtype or key}"
                star_bw = "*" if (p.device_key, "bandwidth", who) in set_by else ""
                star_mm = "*" if (p.device_key, key, who) in set_by else ""
                table.add_row(runner, key, escape(p.device or ""), f"{p.bandwidth_bytes_s / 1e9:.1f}{star_bw}",
                              f"{p.matmul_flops_s / 1e9:.0f}{star_mm}")
            else:
                table.add_row(runner, key, "", f"[red]{escape(p.message or 'failed')}[/]", "")
    return table
