"""arraygpt plot RESULTS.json -o FILE.png."""

from __future__ import annotations

from .options import stderr


def add_parser(sub):
    p = sub.add_parser("plot", help="plot tokens/s against batch size and context length",
                       description="Plot decode tokens/s against batch size and against context length, one line "
                                   "per backend, from an `arraygpt bench --json` file.")
    p.add_argument("results", metavar="RESULTS.json")
    p.add_argument("-o", "--output", default="bench.png", metavar="FILE.png", help="image to write (default: bench.png)")


def run(args) -> int:
    from benchmarks.jsonio import read_json
    from benchmarks.plot import plot_results

    plot_results(read_json(args.results), args.output)
    stderr.print(f"wrote {args.output}")
    return 0
