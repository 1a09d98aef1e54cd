"""How a row and its parts are named wherever they are shown (ids, tables, report, plot, compare), and the
figure a row is judged by. The bottom of benchmarks/: imports nothing of it."""

from __future__ import annotations

from arraygpt.backends import BACKENDS


def is_peer(runner: str) -> bool:
    """A peer's row (HF, llama.cpp, ...): every runner that is not one of our backends."""
    return runner not in BACKENDS


def where_label(runner: str, device: str | None = None, mesh: str | None = None, threads: int | None = None) -> str:
    """'jax', 'jax:gpu', 'jax[dp=2,tp=4]', 'numpy@1t': a runner, its device, its mesh and its CPU threads
    (where the scenario sets them), as ids and tables show them."""
    return runner + (f":{device}" if device else "") + (f"[{mesh}]" if mesh else "") + (f"@{threads}t" if threads else "")


def worker_label(runner: str, device: str | None = None, mesh: str | None = None, precision: str = "float32",
                 threads: int | None = None) -> str:
    """The worker a scenario runs in (one process per runner, device, mesh, threads and precision); probes
    and parity are keyed by it."""
    return where_label(runner, device, mesh, threads) + ("+tf32" if precision == "tf32" else "")


def numerics_label(dtype: str, precision: str = "float32", weights: str | None = None) -> str:
    """'float32', 'float32+tf32', 'float32+bfloat16-weights': what a row's arithmetic is."""
    label = dtype
    if precision != "float32":
        label += f"+{precision}"
    if weights and weights != dtype:
        label += f"+{weights}-weights"
    return label


def product_key(dtype: str, precision: str = "float32", weights: str | None = None) -> str:
    """The arithmetic of the weight products, which sets the matmul ceiling: 'float32', 'float32+tf32',
    'bfloat16' (a mixed run's products read bfloat16 weights)."""
    return numerics_label(weights or dtype, precision)


def metric_of(new_tokens: int) -> str:
    """What a scenario is judged by, the one rule: 'decode', or 'prefill' for a single new token."""
    return "decode" if new_tokens > 1 else "prefill"


def headline(new_tokens: int) -> str:
    """The figure a scenario is judged by: decode tokens/s, or prefill tokens/s for a single new token."""
    return f"{metric_of(new_tokens)}_tps"
