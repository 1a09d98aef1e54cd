"""The bench's tables: one table per workload (model, numerics, batch, prompt, new tokens) under its own
heading, one row per runner, our rows beside the peers, sized to read whole in about 100 columns; and the
probes with the machine ceilings they set."""

from __future__ import annotations

import itertools

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..judge.derive import derive
from ..records import Result, Run, label
from ..runners import PEERS


def _fmt(value, spec, empty=""):
    return empty if value is None else format(value, spec)


def _ratio(r: Result, peer: str, run: Run) -> str:
    """'1.62x', or for a mixed row '1.62x (2.04x vs bfloat16)': against the peer in the row's dtype and,
    where the run has it, the peer all in the weights' dtype. A ratio whose row or peer row is unsteady or
    invalid carries a '?'."""
    metric, weights = r.metric, r.weights
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


def results_table(run: Run) -> Group:
    """The run for people, in about 100 columns: a title, then one table per workload under its own heading
    (decode workloads show decode figures, prefill ones prefill figures; a column empty for the whole
    workload is left out), each skipped or failed row's reason under its table, and the legend once."""
    run = derive(run)
    machine = run.machine
    gpus = ", ".join(g["name"] for g in machine.get("gpus", [])) or "no GPU"
    parts = [Text(f"arraygpt bench: {run.suite.get('name', '?')} suite, {machine['cpu']} ({machine['cores']} cores), "
                  f"{gpus}, {run.date}", style="bold")]
    if run.kernel_settings_line:  # an ISA capped, another library build: said first
        parts.append(Text(f"kernel settings: {run.kernel_settings_line}", style="bold yellow"))
    peers_here = [p for p in PEERS if p != "picogpt" and any(r.runner == p for r in run.results)]
    key = lambda r: r.workload  # noqa: E731
    for workload, rows in itertools.groupby(sorted(run.results, key=key), key=key):
        parts += _workload_table(run, workload, list(rows), peers_here)
    parts.append(Text(_legend(run), style="dim"))
    return Group(*parts)


# Peers' names in a column heading, kept short so a table with every peer reads whole in 100 columns.
SHORT = {"hf-static": "hfs", "llamacpp": "lcpp"}


def _workload_table(run: Run, workload, rows: list[Result], peers_here: list[str]) -> list:
    model, numerics, batch, prompt_len, new_tokens = workload
    ok = [r for r in rows if r.ok]
    decode = any(r.metrics.decode_tps is not None for r in ok)
    cells = []
    for r in sorted(ok, key=lambda r: (r.runner in PEERS, r.runner, str(r.device))):
        m, d = r.metrics, r.derived
        doubtful = r.validity is not None and r.validity.status not in ("valid", "unmeasured")
        row = {"runner": escape(label(r)) + (" *" if doubtful else "")}
        if decode:
            row["decode/s"] = f"{m.decode_tps.median:.1f}±{m.decode_tps.iqr:.1f}" if m.decode_tps else ""
            latency = m.token_latency_s
            row["ms p50/p99"] = f"{_ms(latency.p50)}/{_ms(latency.p99)}" if latency else ""
        else:
            row["prefill/s"] = _fmt(m.median("prefill_tps"), ".0f")
            row["TTFT ms"] = _fmt(m.median("ttft_s") and m.median("ttft_s") * 1e3, ".0f")
        row["roof"] = roofline_cell(d.roofline(r.metric))
        for p in peers_here:
            row[f"x{SHORT.get(p, p)}"] = _ratio(r, p, run).replace("x", "", 1)
        row["comp s"] = _fmt(m.compile_s, ".1f") if m.compile_s and m.compile_s >= 0.05 and m.compiles else ""
        row["RSS MB"] = _fmt((m.rss_peak_bytes or 0) / 1e6, ".0f")
        row["dev MB"] = _fmt(m.device_bytes and m.device_bytes / 1e6, ".0f")
        row["parity"] = _fmt(d.parity_relative, ".0e")
        row["95% CI"] = interval_cell(r)
        energy = (m.energy or {}).get("joules_per_token")
        row["J/tok"] = _fmt(energy, ".3g")
        cells.append(row)
    columns = [c for c in (cells[0] if cells else {"runner": ""}) if any(row[c] for row in cells)] or ["runner"]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for name in columns:
        table.add_column(name, justify="left" if name == "runner" else "right", no_wrap=True)
    for row in cells:
        table.add_row(*[row[c] for c in columns])
    heading = Text(f"{model} {numerics}, batch {batch}, prompt {prompt_len}, {new_tokens} new", style="bold")
    notes = [Text(f"  {label(r)}: {r.status}: {(r.message or '').strip().splitlines()[0] if (r.message or '').strip() else 'no message'}",
                  style="yellow" if r.status == "skipped" else "red")
             for r in sorted(rows, key=lambda r: r.runner) if not r.ok]
    notes += [Text.from_markup(f"  * {escape(label(r))}: {validity_cell(r)}") for r in ok
              if r.validity is not None and r.validity.status not in ("valid", "unmeasured")]
    return [Text(""), heading] + ([table] if cells else []) + notes


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds < 0.1 else f"{seconds * 1e3:.0f}"


def _legend(run: Run) -> str:
    text = ("tokens/s: medians of the timed repeats, ± the IQR; ms p50/p99: per-token latency; roof: % of the floor "
            "set by the best bandwidth or matmul rate measured on that device in this run (!roof over 100%: that "
            "ceiling is wrong for the row, a probe disturbed by other load); xPEER: our tokens/s over that peer's on "
            "the same workload, numerics and device (" + ", ".join(f"{v}: {k}" for k, v in SHORT.items()) + "; ?: the "
            "row or the peer's is unsteady or invalid, and so is the ratio); comp s: first call minus a steady "
            "one (compiling or recording runners; each call runs at its shape bucket, so a bucket an earlier "
            "scenario compiled shows none); 95% CI: distribution-free interval of the headline median (6 repeats "
            "or more); *: a row not to be trusted, with why under its table (the run's validity line says more)")
    if any(r.mesh for r in run.results):
        text += ("; [mesh] rows: the model split over a JAX device mesh; on simulated CPU devices the devices share "
                 "this machine's cores, so their tokens/s say nothing about scaling (no roofline; all-reduce bytes "
                 "per decode step in the JSON)")
    return text


def interval_cell(r: Result) -> str:
    interval = r.headline.ci95
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
