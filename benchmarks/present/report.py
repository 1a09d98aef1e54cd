"""`arraygpt report RUN.json [RUN.json ...]`: one view across runs and machines (CPU beside GPU).

For each workload (model, batch, prompt length, new tokens), every runner x device x numerics of every
run: tokens/s, % of that device's roofline (the machine ceilings of its own run), the ratio to the
peers of its own run on the same device, and parity. Markdown on stdout; a bar chart with -o.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from arraygpt.engine.errors import ArrayGPTError

from ..judge.derive import derive
from ..records import Run, label
from ..runners import PEERS


@dataclasses.dataclass
class Row:
    workload: tuple           # (model, batch, prompt_len, new_tokens)
    metric: str               # "decode" or "prefill"
    run: str                  # machine and date
    runner: str
    device: str               # cpu, gpu:0, ...
    numerics: str             # float32, float32+tf32, float32+bfloat16-weights, ...
    tps: float
    roofline: float | None
    vs_peers: dict            # peer -> ratio
    parity: float | None
    validity: str = "valid"   # valid, unsteady, invalid, or unmeasured (a run from before validity)
    doubtful: frozenset = frozenset()  # the peers whose ratio carries a doubt (either row unsteady or invalid)

    @property
    def is_peer(self) -> bool:
        return self.runner in PEERS  # runner: the row's label (a mesh or threads named)


def run_labels(runs: list[Run]) -> list[str]:
    """Each run's machine and date, two runs of one machine on one day told apart (#1, #2)."""
    return disambiguate([run.label for run in runs])


def collect(runs: list[Run]) -> list[Row]:
    """A Row per ok result of each derived run."""
    rows = []
    for run, name in zip(runs, run_labels(runs)):
        for r in run.ok_results:
            d = r.derived
            rows.append(Row(workload=(r.model, r.batch, r.prompt_len, r.new_tokens), metric=r.metric, run=name,
                            runner=label(r, device=False), device=r.device_key, numerics=r.numerics,
                            tps=r.headline.median, roofline=d.roofline(r.metric),
                            vs_peers={p: d.ratio(r.metric, p) for p in PEERS if d.ratio(r.metric, p) is not None},
                            doubtful=frozenset(p for p in PEERS if run.ratio_doubtful(r, r.metric, p)),
                            parity=d.parity_relative, validity=r.validity.status if r.validity else "unmeasured"))
    return rows


def disambiguate(labels: list[str]) -> list[str]:
    """Two runs of one machine on one day get #1, #2."""
    seen = {name: 0 for name in labels}
    out = []
    for name in labels:
        if labels.count(name) > 1:
            seen[name] += 1
            name = f"{name} #{seen[name]}"
        out.append(name)
    return out


def _workload_title(workload, metric) -> str:
    model, batch, prompt_len, new_tokens = workload
    what = "decode tokens/s" if metric == "decode" else "prefill tokens/s"
    return f"{model}, batch {batch}, prompt {prompt_len}, {new_tokens} new: {what}"


def _sorted_groups(rows):
    key = lambda r: (r.workload[0], r.metric == "prefill", r.workload[1:])  # noqa: E731
    for (model, _, rest), group in itertools.groupby(sorted(rows, key=key), key=key):
        group = list(group)
        yield (model, *rest), group[0].metric, group


def markdown(runs: list, sources: list[str]) -> str:
    runs = [derive(run) for run in runs]
    rows = collect(runs)
    if not rows:
        raise ArrayGPTError("the files hold no successful scenario to report")
    peers = [p for p in PEERS if any(p in r.vs_peers for r in rows)]
    labels = run_labels(runs)
    lines = ["Runs: " + "; ".join(f"**{name}** (`{source}`, commit {str(run.environment.get('commit'))[:7]}; "
                                  f"{run.validity_line}{f'; kernel settings: `{run.kernel_settings_line}`' if run.kernel_settings_line else ''})"
                                  for name, source, run in zip(labels, sources, runs)), ""]
    for workload, metric, group in _sorted_groups(rows):
        several = len(runs) > 1  # one run: its machine and date are in the Runs line, not on every row
        lines += [f"#### {_workload_title(workload, metric)}", "",
                  "| " + "run | " * several + "runner | device | numerics | tok/s | % roofline | "
                  + " | ".join(f"x {p}" for p in peers) + (" | " if peers else "") + "parity |",
                  "|" + "---|" * several + "---|---|---|---:|---:|" + "---:|" * len(peers) + "---:|"]
        for r in sorted(group, key=lambda r: (labels.index(r.run), r.numerics, r.is_peer, -r.tps)):
            ratios = [f"{r.vs_peers[p]:.2f}x{'?' if p in r.doubtful else ''}" if p in r.vs_peers else "" for p in peers]
            lines.append("| " + f"{r.run} | " * several + f"{r.runner}{' (peer)' if r.is_peer else ''} | {r.device} | {r.numerics} | "
                         f"{_tps(r.tps)}{_mark(r.validity)} | {_percent(r.roofline)} | "
                         + " | ".join(ratios) + (" | " if peers else "")
                         + f"{'' if r.parity is None else f'{r.parity:.0e}'} |")
        lines.append("")
    lines.append("% roofline: of the floor set by the best bandwidth (decode) or matmul rate (prefill) measured on "
                 "that device in that run (**!** over 100%: that ceiling is wrong for the row); x peer: ratio to the peer in the same run, device and numerics (?: the row or the peer's is unsteady or invalid, and so is the ratio); parity: "
                 "max |logit - float64 reference| / max |reference logit|; (unsteady), (invalid): the run's validity "
                 "check found that row disturbed or too short (its JSON says why).")
    return "\n".join(lines) + "\n"


def _mark(validity: str) -> str:
    """' (unsteady)', ' (invalid)': a figure not to be trusted says so beside itself."""
    return f" ({validity})" if validity in ("unsteady", "invalid") else ""


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return ""
    text = f"{fraction:.0%}" if fraction >= 0.1 else f"{fraction:.1%}"
    return f"**!{text}**" if fraction > 1 else text  # over 100%: the run's ceiling is wrong for that row


def _tps(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def chart(runs: list, path) -> None:
    """One panel per workload; a bar per run x runner x device x numerics (log scale), coloured by run."""
    try:
        import matplotlib
    except ImportError:
        raise ArrayGPTError("the chart needs matplotlib: pip install 'arraygpt[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [derive(run) for run in runs]
    rows = collect(runs)
    if not rows:
        raise ArrayGPTError("the files hold no successful scenario to report")
    groups = list(_sorted_groups(rows))
    labels = run_labels(runs)
    colours = {name: f"C{i}" for i, name in enumerate(labels)}
    columns = min(3, len(groups))
    lines_per_panel = max(len(group) for _, _, group in groups)
    height = 0.6 + 0.22 * lines_per_panel
    fig, axes = plt.subplots(math.ceil(len(groups) / columns), columns, squeeze=False,
                             figsize=(6.2 * columns, height * math.ceil(len(groups) / columns) + 0.8))
    try:
        from matplotlib.ticker import NullFormatter
        for ax, (workload, metric, group) in zip(axes.flat, groups):
            group = sorted(group, key=lambda r: (labels.index(r.run), r.numerics, r.is_peer, -r.tps))[::-1]
            names = [f"{r.runner} {r.device} {r.numerics}" for r in group]
            low = min(r.tps for r in group) / 2
            bars = ax.barh(range(len(group)), [r.tps - low for r in group], left=low,
                           color=[colours[r.run] for r in group])
            for bar, r in zip(bars, group):
                if r.is_peer:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
            ax.set_yticks(range(len(group)), names, fontsize=7)
            ax.set_xscale("log")
            ax.set_xlim(low, max(r.tps for r in group) * 2.5)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(_workload_title(workload, metric), fontsize=8)
            ax.grid(axis="x", alpha=0.3, which="both")
            for i, r in enumerate(group):
                ax.text(r.tps, i, f" {_tps(r.tps)}", va="center", fontsize=6)
        for ax in list(axes.flat)[len(groups):]:
            ax.axis("off")
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in labels]
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="grey", hatch="///", edgecolor="white"))
        fig.legend(handles, labels + ["peer (hatched)"], loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
        fig.savefig(path, dpi=110)
    finally:  # an error mid-drawing must not leave the figure open
        plt.close(fig)
