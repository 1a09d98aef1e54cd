"""arraygpt plot RESULTS.json -o FILE.png."""

from __future__ import annotations

from .options import naming_the_path, stderr


def add_parser(sub):
    p = sub.add_parser("plot", help="plot tokens/s against batch size and context length",
                       description="Plot decode tokens/s against batch size and against context length, one line "
                                   "per backend, from an `arraygpt bench --json` file.")
    p.add_argument("results", metavar="RESULTS.json")
    p.add_argument("-o", "--output", default=None, metavar="FILE.png", help="image to write: png, svg, pdf or jpg; no suffix: .png; an existing file is replaced only "
                        "if it is an image of that format (default: the results file's name with .png, beside it)")


def run(args) -> int:
    from arraygpt.benchmarks.outputs import check_image_output
    from arraygpt.benchmarks.present.plot import plot_results
    from arraygpt.benchmarks.records import Run

    from pathlib import Path
    output = check_image_output(args.output if args.output is not None else Path(args.results).with_suffix(".png"))
    run = Run.load(args.results)
    with naming_the_path(output):
        plot_results(run, output)
    stderr.print(f"wrote {output}")
    return 0
