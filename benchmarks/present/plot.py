"""Plots of a bench result: decode tokens/s against batch size and against context length.

One line per runner x device x mesh x numerics (precision and weights): a float32 row, its tf32 and its
bfloat16-weights rows are never merged. Peers are dashed, whatever their name. Files of every schema are
read as report reads them (records.Run: the H100 run's JAX float32 rows are float32+tf32).
"""

from __future__ import annotations

import collections

from arraygpt.engine.errors import ArrayGPTError

from ..judge.derive import derive
from ..records import Run, label
from ..runners import PEERS


def _lines(results, x_key, fixed_keys):
    """label -> sorted [(x, tokens/s)] over the scenarios that share the most common fixed values."""
    decode = [r for r in results if r.ok and r.metrics.decode_tps is not None]
    if not decode:
        return {}, None
    common = collections.Counter(tuple(getattr(r, k) for k in fixed_keys) for r in decode).most_common(1)[0][0]
    lines = collections.defaultdict(list)
    for r in decode:
        if tuple(getattr(r, k) for k in fixed_keys) == common:
            trusted = r.validity is None or r.validity.trusted
            lines[label(r, numerics=True)].append((x_key(r), r.metrics.decode_tps.median, trusted))
    return {k: sorted(v) for k, v in lines.items()}, dict(zip(fixed_keys, common))


def devices_measured(run: Run) -> str:
    """'cpu' or 'gpu:0 (NVIDIA H100 80GB HBM3)': the devices the rows ran on, named."""
    keys = sorted({r.device_key for r in run.ok_results})
    machine = run.machine
    gpus = [g["name"] for g in machine.get("gpus", [])]
    names = []
    for key in keys:
        if key == "cpu":
            names.append(f"{machine.get('cpu', '?')} ({machine.get('cores', '?')} cores)")
        else:
            index = int(key.split(":")[1]) if ":" in key and key.split(":")[1].isdigit() else 0
            names.append(gpus[index] if index < len(gpus) else key)
    return ", ".join(names) or "no device"


def plot_results(run, path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ArrayGPTError("plotting needs matplotlib: pip install 'arraygpt[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = derive(run)  # judges each row's validity
    results = run.results
    by_batch, fixed_b = _lines(results, lambda r: r.batch, ("model", "prompt_len", "new_tokens"))
    by_context, fixed_c = _lines(results, lambda r: r.prompt_len + r.new_tokens / 2, ("model", "batch"))
    if not by_batch:
        raise ArrayGPTError("the result file has no successful decode scenario to plot")
    peers = {label(r, numerics=True) for r in results if r.runner in PEERS}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        colours = {name: f"C{i % 10}" for i, name in enumerate(sorted(set(by_batch) | set(by_context)))}
        markers = "os^vD<>ph*"
        for ax, lines, fixed, xlabel in ((axes[0], by_batch, fixed_b, "batch size"),
                                         (axes[1], by_context, fixed_c, "mean context length (tokens)")):
            doubtful = False
            for i, (name, points) in enumerate(sorted(lines.items())):
                xs, ys, trusted = zip(*points)
                ax.plot(xs, ys, marker=markers[i // 10 % len(markers)], label=name, color=colours[name],
                        linestyle="--" if name in peers else "-")
                ringed = [(x, y) for x, y, ok in points if not ok]
                if ringed:  # an unsteady or invalid figure is ringed in red, never drawn as sure as the rest
                    doubtful = True
                    ax.scatter(*zip(*ringed), s=160, facecolors="none", edgecolors="red", linewidths=1.5, zorder=3)
            if doubtful:
                ax.scatter([], [], s=160, facecolors="none", edgecolors="red", label="not valid (unsteady or invalid)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("decode tokens/s")
            ax.set_title(", ".join(f"{k} {v}" for k, v in fixed.items()) + "; dashed: peers", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"arraygpt bench: {devices_measured(run)}, {run.date}")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:  # an error mid-drawing must not leave the figure open (pyplot keeps every open one)
        plt.close(fig)
