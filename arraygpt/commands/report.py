"""arraygpt report RUN.json [RUN.json ...]: one table (and chart) across runs and machines."""

from __future__ import annotations

from .options import naming_the_path, stderr


def add_parser(sub):
    p = sub.add_parser("report", help="one Markdown table (and chart) across bench runs and machines",
                       description="Put bench results from several runs side by side (a CPU run beside a GPU run): "
                                   "for each workload, every backend x device x numerics of every run, with tokens/s, "
                                   "% of that device's roofline, the ratio to the peers of the same run and device, "
                                   "and parity. Markdown on stdout (for a PR comment or a README); -o adds a chart. "
                                   "Runs are labelled by machine and date.")
    p.add_argument("results", nargs="+", metavar="RUN.json", help="files written by `arraygpt bench --json`")
    p.add_argument("--format", default="md", choices=("md", "csv", "jsonl"),
                   help="md: the report's tables (default); csv or jsonl: one row per scenario of every run, with a "
                        "'run' column naming its machine and date")
    p.add_argument("-o", "--output", default=None, metavar="FILE.png", help="also draw a bar chart per workload (png, svg, pdf or jpg; no suffix: .png; an existing "
                        "file is replaced only if it is an image of that format)")


def run(args) -> int:
    from arraygpt.benchmarks.outputs import check_image_output
    from arraygpt.benchmarks.records import Run
    from arraygpt.benchmarks.present.report import chart, markdown

    output = check_image_output(args.output) if args.output is not None else None
    runs = [Run.load(path) for path in args.results]
    if args.format == "md":
        print(markdown(runs, args.results), end="")
    else:
        from arraygpt.benchmarks.present.formats import flat_rows, render
        from arraygpt.benchmarks.present.report import run_labels
        print(render([row for run, name in zip(runs, run_labels(runs)) for row in flat_rows(run, name)], args.format),
              end="")
    incomplete = [path for path, run in zip(args.results, runs) if not run.complete]
    if incomplete:
        stderr.print(f"[yellow]note:[/] {', '.join(incomplete)}: an incomplete run (\"complete\": false); "
                     "its missing scenarios are not in the report")
    if output:
        with naming_the_path(output):
            chart(runs, output)
        stderr.print(f"wrote {output}")
    return 0
