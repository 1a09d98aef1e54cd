"""arraygpt compare BASE.json NEW.json: the CI regression gate."""

from __future__ import annotations

from rich.table import Table

from engine.errors import ArrayGPTError

from .options import report_console, stderr


def threshold(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise ArrayGPTError(f"--threshold takes a fraction or a percentage such as 10%, got '{text}'") from None
    if not 0 <= value < 1:
        raise ArrayGPTError(f"--threshold must be between 0% and 100%, got '{text}'")
    return value


def add_parser(sub):
    p = sub.add_parser("compare", help="compare two bench results; exit 1 on a confident slowdown",
                       description="Compare two `arraygpt bench --json` files scenario by scenario: the ratio of "
                                   "median tokens/s (decode, or prefill for single-token scenarios), a bootstrap "
                                   "confidence interval from the repeats, and a verdict. Exit 1 when a scenario is "
                                   "slower beyond the threshold with confidence, 0 otherwise.")
    p.add_argument("base", metavar="BASE.json", help="a result file, or several runs of the base commit "
                   "comma-separated (their repeats are pooled, so drift between runs counts as noise)")
    p.add_argument("new", metavar="NEW.json", help="the same for the new commit")
    p.add_argument("--threshold", default="10%", help="slowdown that counts as a regression (default: 10%%)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the interval (default: 0.95)")
    p.add_argument("--force", action="store_true", help="compare results from different machines or backends")
    p.add_argument("--json", metavar="PATH", help="also write the verdicts as JSON")


def run(args) -> int:
    from benchmarks.compare import compare
    from benchmarks.jsonio import read_json, write_json_atomic

    limit = threshold(args.threshold)
    base = [read_json(path) for path in args.base.split(",") if path]
    new = [read_json(path) for path in args.new.split(",") if path]
    rows, only_base, only_new = compare(base, new, limit, args.confidence, args.force)
    table = Table(title=f"{args.new} against {args.base} (threshold {limit:.0%}, {args.confidence:.0%} interval)",
                  title_justify="left")
    for name in ("scenario", "metric", "base tok/s", "new tok/s", "ratio", "interval", "verdict"):
        table.add_column(name, justify="left" if name in ("scenario", "metric", "verdict") else "right")
    colour = {"slower": "red", "faster": "green", "no change": "dim"}
    for r in rows:
        table.add_row(r.id, r.metric, f"{r.base:.1f}", f"{r.new:.1f}", f"{r.ratio:.3f}",
                      f"{r.low:.3f}-{r.high:.3f}", f"[{colour[r.verdict]}]{r.verdict}[/]")
    console = report_console()
    console.print(table)
    for label, ids in (("only in BASE", only_base), ("only in NEW", only_new)):
        for sid in ids:
            console.print(f"[yellow]{label}:[/] {sid}")
    if args.json:
        write_json_atomic(args.json, {"threshold": limit, "confidence": args.confidence,
                                      "comparisons": [r.to_json() for r in rows],
                                      "only_in_base": only_base, "only_in_new": only_new})
    if not rows:
        raise ArrayGPTError("no scenario ran successfully in both files")
    slower = [r for r in rows if r.verdict == "slower"]
    stderr.print(f"{len(slower)} slower, {sum(r.verdict == 'faster' for r in rows)} faster, "
                 f"{sum(r.verdict == 'no change' for r in rows)} unchanged")
    return 1 if slower else 0
