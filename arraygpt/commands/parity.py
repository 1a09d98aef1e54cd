"""arraygpt parity: do the backends compute the same function? Compared with a NumPy float64 reference."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from arraygpt.backends import BACKENDS
from arraygpt.engine.errors import ArrayGPTError

from .options import add_mesh_options, join_processes, report_console, seed, stderr

DEFAULT_BACKENDS = "numpy,jax,torch,cupy,strict"


def parse_backend_list(text: str) -> list[tuple[str, str | None]]:
    """'numpy,jax:gpu,torch:cpu' -> [('numpy', None), ('jax', 'gpu'), ('torch', 'cpu')]."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, device = item.partition(":")
        if name not in BACKENDS:
            raise ArrayGPTError(f"unknown backend '{name}' in '{text}' (choose from {', '.join(BACKENDS)})")
        pairs.append((name, device or None))
    if not pairs:
        raise ArrayGPTError("no backends given")
    return pairs


def add_parser(sub):
    p = sub.add_parser("parity", help="compare every backend x dtype with a float64 reference",
                       description="Run the same prompts through every requested backend and dtype and compare "
                                   "with NumPy float64: max abs and relative logit difference, greedy-token "
                                   "agreement, and cached vs uncached decode. Exit 1 if any cell fails. "
                                   "Backends that are not usable here are listed as skipped, with the reason.")
    p.add_argument("--model", default="124M", metavar="SPEC", help="preset, directory or hub id (default: 124M)")
    p.add_argument("--backends", default=DEFAULT_BACKENDS, metavar="LIST",
                   help=f"comma-separated, each NAME or NAME:DEVICE (default: {DEFAULT_BACKENDS})")
    p.add_argument("--dtypes", default="float32", metavar="LIST",
                   help="comma-separated: float32, float16, bfloat16, float64 (default: float32)")
    p.add_argument("--precision", default="float32", choices=("float32", "tf32"),
                   help="float32 products in IEEE float32 (default) or tf32 (NVIDIA GPUs; tolerance 1e-2)")
    p.add_argument("--weights", default=None, metavar="DTYPE",
                   help="store the matrices in this dtype (mixed precision with --dtypes float32 --weights "
                        "bfloat16; tolerance 3e-2, float16 weights 5e-3)")
    p.add_argument("--batch", type=int, default=2, help="prompts per run (default: 2)")
    p.add_argument("--prompt-len", type=int, default=16, help="tokens per prompt (default: 16)")
    p.add_argument("--new-tokens", type=int, default=16, help="greedy tokens compared (default: 16)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random prompts (default: 0)")
    p.add_argument("--json", metavar="PATH", help="also write the matrix as JSON (a new path, or an earlier parity result, which is replaced)")
    add_mesh_options(p)


def render(cells) -> tuple[Table, list[str]]:
    """The matrix, and footnotes for skipped and failed cells (long reasons would wreck the columns)."""
    table = Table(title="parity against NumPy float64 (relative = max|diff| / max|reference logit|)",
                  title_justify="left")
    for column in ("backend", "device", "dtype", "relative", "tolerance", "tokens", "cache", "result"):
        table.add_column(column, justify="right" if column in ("relative", "tolerance", "tokens", "cache") else "left")
    notes = []
    for c in cells:
        if c.status != "pass":
            notes.append(f"[{len(notes) + 1}] {c.backend} {c.dtype}: {c.reason}")
        mark = f" [{len(notes)}]" if c.status != "pass" else ""
        if c.status == "skipped":
            table.add_row(c.backend, escape(c.device), c.dtype, "", "", "", "", f"[dim]skipped{escape(mark)}[/]")
            continue
        verdict = "[green]pass[/]" if c.status == "pass" else f"[red]FAIL{escape(mark)}[/]"
        table.add_row(c.backend, escape(c.device), c.dtype, f"{c.relative:.1e}", f"{c.tolerance:.0e}",
                      f"{c.greedy_agreement:.0%}", f"{c.cached_vs_uncached:.0%}", verdict)
    return table, notes


def run(args) -> int:
    from arraygpt.benchmarks.measure.environment import environment
    from arraygpt.benchmarks.jsonio import write_json_atomic
    from arraygpt.backends.base import DTYPE_NAMES
    from arraygpt.benchmarks.parity import run_parity

    from arraygpt.benchmarks.outputs import check_json_output

    json_path = check_json_output(args.json, "arraygpt-parity", replace=True) if args.json else None
    backends = parse_backend_list(args.backends)
    join_processes(args, [name for name, _ in backends])
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    unknown = [d for d in dtypes if d not in DTYPE_NAMES]
    if unknown or not dtypes:
        raise ArrayGPTError(f"unknown dtype '{unknown[0] if unknown else ''}' (choose from {', '.join(DTYPE_NAMES)})")
    with stderr.status("parity: starting") as status:
        def done(cell):
            colour = {"pass": "green", "fail": "red"}.get(cell.status, "dim")
            stderr.print(f"[{colour}]{cell.status}[/] {cell.backend} {escape(cell.device)} {cell.dtype}"
                         + (f" (relative {cell.relative:.1e})" if cell.status != "skipped" else ""))
        setup, cells = run_parity(args.model, backends, dtypes, precision=args.precision, weights=args.weights,
                                  mesh=args.mesh,
                                  batch=args.batch,
                                  prompt_len=args.prompt_len, new_tokens=args.new_tokens, seed=args.seed,
                                  on_cell=done, on_progress=lambda text: status.update(f"parity {text}"))
    table, notes = render(cells)
    console = report_console()
    console.print(table)
    for note in notes:
        console.print(escape(note), style="dim", soft_wrap=True)
    console.print("[dim]tokens: greedy tokens equal to the reference's; cache: cached decode equal to full "
                  "recomputation on the backend itself[/]")
    if json_path:
        write_json_atomic(json_path, {"kind": "arraygpt-parity", "environment": environment(), "setup": setup,
                                      "cells": [c.to_json() for c in cells]})
    failed = [c for c in cells if c.status == "fail"]
    ran = [c for c in cells if c.status != "skipped"]
    if not ran:
        raise ArrayGPTError("no backend x dtype could run here (see the table)")
    stderr.print(f"{len(ran) - len(failed)}/{len(ran)} cells pass, {len(cells) - len(ran)} skipped")
    return 1 if failed else 0
