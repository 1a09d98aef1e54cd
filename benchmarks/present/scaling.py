"""Decode time per token against the bytes a step must read, from a bench result (the scaling suite).

    python -m arraygpt.benchmarks.present.scaling RESULTS.json -o scaling.png

Left: ms per token against context length (from every step's own latency, so one long run covers a
range of contexts), with the bandwidth floor of each context. Right: ms per token against model size.
Both against the floor bytes / bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse

import numpy as np

from arraygpt.engine.families import read_config
from arraygpt.engine.source import resolve_model

from ..judge.roofline import decode_bytes_per_step
from ..records import Run, as_run


def step_latencies_by_context(result):
    """(context length, median ms) for each decode step position over the repeats."""
    steps = np.array([r["step_s"] for r in result.timed])  # [repeats, new_tokens - 1]
    contexts = result.prompt_len + 1 + np.arange(steps.shape[1])
    return contexts, np.median(steps, axis=0) * 1e3


def plot_scaling(run, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = as_run(run)
    ok = [r for r in run.ok_results if r.batch == 1 and r.new_tokens > 1]
    configs = {m: read_config(resolve_model(m).directory / "config.json") for m in {r.model for r in ok}}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    summary = []
    for index, runner in enumerate(sorted({r.worker for r in ok})):  # the worker: runner, device, mesh
        colour = f"C{index}"
        probe = run.probes.get(runner, {}).get("float32")  # probes are keyed by the worker's label
        bandwidth = probe and probe.bandwidth_bytes_s
        base_model = "124M" if "124M" in configs else sorted(configs)[0]
        context_runs = sorted((r for r in ok if r.worker == runner and r.model == base_model),
                              key=lambda r: r.prompt_len)
        for r in context_runs:
            ctx, ms = step_latencies_by_context(r)
            left.plot(ctx, ms, ".", markersize=2, alpha=0.5, color=colour)
        if context_runs and bandwidth:
            ctx = np.arange(16, 1025)
            floor = [decode_bytes_per_step(configs[base_model], "float32", 1, c) / bandwidth * 1e3 for c in ctx]
            left.plot(ctx, floor, "--", color=colour, label=f"{runner} floor: bytes / {bandwidth / 1e9:.0f} GB/s")
            left.plot([], [], ".", color=colour, label=f"{runner}: measured, each step")
        sizes = sorted((r for r in ok if r.worker == runner and r.prompt_len == 16),
                       key=lambda r: configs[r.model].n_params)
        if sizes:
            params = [configs[r.model].n_params / 1e6 for r in sizes]
            ms = [1e3 / r.metrics.decode_tps.median for r in sizes]
            right.plot(params, ms, "o-", color=colour, label=f"{runner}: measured")
            if bandwidth:
                floor = [decode_bytes_per_step(configs[r.model], "float32", 1, 16 + r.new_tokens / 2) / bandwidth * 1e3
                         for r in sizes]
                right.plot(params, floor, "--", color=colour, label=f"{runner} floor: bytes / bandwidth")
                summary += [(runner, r.model, m, f) for r, m, f in zip(sizes, ms, floor)]
    left.set(xlabel="context length (tokens)", ylabel="ms per token",
             title="GPT-2 124M, batch 1: per-step latency (cache sized to the run)")
    right.set(xlabel="parameters (millions)", ylabel="ms per token", title="batch 1, 16-token prompt")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"decode time against the bytes each step reads ({run.machine['cpu']}, {run.date})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("-o", "--output", default="scaling.png")
    args = parser.parse_args()
    for runner, model, measured, floor in plot_scaling(Run.load(args.results), args.output):
        print(f"{runner} {model}: {measured:.1f} ms/token, floor {floor:.1f} ms ({floor / measured:.0%} of the floor's speed)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
