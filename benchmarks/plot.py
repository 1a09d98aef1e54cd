"""Plots of a bench result: decode tokens/s against batch size and against context length."""

from __future__ import annotations

import collections

from engine.errors import ArrayGPTError

from .scenarios import where_label


def _field(r, key):
    """A result's field; "dtype" is read as its numerics, so float32 and mixed rows are not one line."""
    return r.get("numerics", r["dtype"]) if key == "dtype" else r[key]


def _lines(results, x_key, fixed_keys):
    """runner -> sorted [(x, tokens/s)] over the scenarios that share the most common fixed values."""
    decode = [r for r in results if r["status"] == "ok" and "decode_tps" in r["metrics"]]
    if not decode:
        return {}, None
    common = collections.Counter(tuple(_field(r, k) for k in fixed_keys) for r in decode).most_common(1)[0][0]
    lines = collections.defaultdict(list)
    for r in decode:
        if tuple(_field(r, k) for k in fixed_keys) == common:
            label = where_label(r["runner"], r.get("device"), r.get("mesh"))  # each mesh its own line
            lines[label].append((x_key(r), r["metrics"]["decode_tps"]["median"]))
    return {k: sorted(v) for k, v in lines.items()}, dict(zip(fixed_keys, common))


def plot_results(doc: dict, path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ArrayGPTError("plotting needs matplotlib: pip install 'arraygpt[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc.get("results", [])
    by_batch, fixed_b = _lines(results, lambda r: r["batch"], ("model", "dtype", "prompt_len", "new_tokens"))
    by_context, fixed_c = _lines(results, lambda r: r["prompt_len"] + r["new_tokens"] / 2, ("model", "dtype", "batch"))
    if not by_batch:
        raise ArrayGPTError("the result file has no successful decode scenario to plot")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    try:
        _draw(fig, axes, doc, by_batch, fixed_b, by_context, fixed_c, path)
    finally:  # an error mid-drawing must not leave the figure open (pyplot keeps every open one)
        plt.close(fig)


def _draw(fig, axes, doc, by_batch, fixed_b, by_context, fixed_c, path) -> None:
    colours = {label: f"C{i}" for i, label in enumerate(sorted(set(by_batch) | set(by_context)))}
    for ax, lines, fixed, xlabel in ((axes[0], by_batch, fixed_b, "batch size"),
                                     (axes[1], by_context, fixed_c, "mean context length (tokens)")):
        for label, points in sorted(lines.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=label, color=colours[label],
                    linestyle="--" if label in ("hf", "picogpt") else "-")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("decode tokens/s")
        ax.set_title(", ".join(f"{k} {v}" for k, v in fixed.items()), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend()
    machine = doc["environment"]["machine"]
    fig.suptitle(f"arraygpt bench: {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores), "
                 f"{doc['environment']['date'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
