"""arraygpt compare BASE.json NEW.json: the CI regression gate."""

from __future__ import annotations

import os

from rich import box
from rich.markup import escape
from rich.table import Table

from arraygpt.engine.errors import ArrayGPTError

from .options import fraction, report_console, stderr


def confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArrayGPTError(f"--confidence takes a number in (0, 1) such as 0.95, got '{text}'") from None
    if not 0 < value < 1:
        raise ArrayGPTError(f"--confidence must be in (0, 1) such as 0.95, got '{text}'")
    return value


def add_parser(sub):
    p = sub.add_parser("compare", help="compare two bench results; exit 1 on a confident slowdown",
                       description="Compare two `arraygpt bench --json` files scenario by scenario: the ratio of "
                                   "median tokens/s (decode, or prefill for single-token scenarios), a bootstrap "
                                   "confidence interval from the repeats, the smallest change it could detect, and a "
                                   "verdict; and each scenario's parity with the float64 reference. Exit 1 when a "
                                   "scenario is slower beyond the threshold with confidence or its numerics got "
                                   "worse than the budget (parity past it, or fewer greedy tokens agreeing with the "
                                   "reference than the base), 0 otherwise. Each side's validity (unsteady, invalid) "
                                   "is shown beside the verdict.")
    p.add_argument("base", metavar="BASE.json", help="a result file, or several runs of the base commit "
                   "comma-separated (their repeats are pooled, so drift between runs counts as noise)")
    p.add_argument("new", metavar="NEW.json", help="the same for the new commit")
    p.add_argument("--threshold", default="10%", help="slowdown that counts as a regression (default: 10%%)")
    p.add_argument("--confidence", type=confidence, default=0.95,
                   help="confidence level of the interval, in (0, 1) (default: 0.95)")
    p.add_argument("--force", action="store_true", help="compare results from different machines or backends")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="compare runs that did not finish (\"complete\": false) on the scenarios they did finish; "
                        "without it such a run gets no verdict (exit 2)")
    p.add_argument("--min-repeats", type=int, default=3, metavar="N",
                   help="pooled repeats a side needs for a verdict; fewer: 'too few repeats' (default: 3)")
    p.add_argument("--parity-factor", type=float, default=2.0, metavar="X",
                   help="numerics gate: fail when a scenario's parity with the float64 reference is worse than X "
                        "times the base's (and above --parity-floor), or past its dtype's tolerance (default: 2)")
    p.add_argument("--parity-floor", type=float, default=1e-5, metavar="E",
                   help="parity changes below this relative error never fail the gate (default: 1e-5)")
    p.add_argument("--json", metavar="PATH", help="also write the verdicts as JSON (a new path, or an earlier "
                   "compare result, which is replaced)")


def run(args) -> int:
    from arraygpt.benchmarks.judge.compare import NumericsBudget, compare
    from arraygpt.benchmarks.jsonio import write_json_atomic
    from arraygpt.benchmarks.records import Run
    from arraygpt.benchmarks.outputs import check_json_output

    limit = fraction(args.threshold, "--threshold", "10%")
    json_path = check_json_output(args.json, "arraygpt-compare", replace=True) if args.json is not None else None
    named = {side: [path for path in paths.split(",") if path] for side, paths in (("BASE", args.base), ("NEW", args.new))}
    seen = {}
    for side, paths in named.items():
        for path in paths:
            key = os.path.realpath(path)
            if key in seen:
                raise ArrayGPTError(f"{path} is given twice ({seen[key]} and {side}): a run compared with itself "
                                    "says nothing; compare two different runs")
            seen[key] = side
    sides = {}
    for side, paths in named.items():
        if not paths:
            raise ArrayGPTError(f"no {side} file given")
        runs = [Run.load(path) for path in paths]
        for path, run in zip(paths, runs):
            if not run.complete and not args.allow_incomplete:
                unfinished = sum(not r.ok for r in run.results)
                raise ArrayGPTError(f"{path} is an incomplete run (\"complete\": false; {unfinished} scenario(s) "
                                    f"did not finish, of {len(run.results)} recorded): no verdict. Rerun it, or "
                                    "pass --allow-incomplete to compare the scenarios that finished")
        sides[side] = runs
    base, new = sides["BASE"], sides["NEW"]
    if args.min_repeats < 1 or not (args.parity_factor >= 1) or not (args.parity_floor >= 0):
        raise ArrayGPTError("--min-repeats must be >= 1, --parity-factor >= 1 and --parity-floor >= 0")
    rows, only_base, only_new = compare(base, new, limit, args.confidence, args.force, args.min_repeats,
                                        NumericsBudget(args.parity_factor, args.parity_floor))
    # Sized to read whole in 100 columns: ids never cut, the metric implied (prefill for one new token, else
    # decode), a row with an unsteady or invalid side marked * (the JSON has each side's validity).
    table = Table(title=f"{args.new} against {args.base} (threshold {limit:.0%}, {args.confidence:.0%} interval)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="base, new: tokens/s, decode, or prefill where one new token is made; detect: the smallest change the "
                          "interval could call; numerics: parity base/new against the budget; *: a side is unsteady "
                          "or invalid, so the verdict may be the machine's", caption_justify="left")
    for name in ("scenario", "base", "new", "ratio", "interval", "detect", "reps", "verdict", "numerics"):
        # the id folds onto a second line rather than being cut; every figure stays whole on one
        table.add_column(name, justify="left" if name in ("scenario", "verdict", "numerics") else "right",
                         no_wrap=name not in ("scenario", "numerics"), overflow="fold")
    colour = {"slower": "red", "faster": "green", "no change": "dim", "too few repeats": "yellow"}
    for r in rows:
        parity = "/".join("-" if v is None else f"{v:.0e}" for v in r.parity)
        numerics = {"ok": "[dim]ok[/]", "worse": f"[red]worse[/] {parity}", "unknown": "[dim]not measured[/]"}[r.numerics]
        doubt = " *" if any(v != "valid" for v in r.validity) else ""
        table.add_row(escape(r.id) + doubt, f"{r.base:.1f}", f"{r.new:.1f}", f"{r.ratio:.3f}",
                      f"{r.low:.3f}-{r.high:.3f}", "-" if r.detectable is None else f"±{r.detectable:.0%}",
                      f"{r.repeats[0]}/{r.repeats[1]}", f"[{colour[r.verdict]}]{r.verdict}[/]", numerics)
    console = report_console()
    console.print(table)
    for label, ids in (("only in BASE", only_base), ("only in NEW", only_new)):
        for sid in ids:
            console.print(f"[yellow]{label}:[/] {sid}")
    if json_path:
        write_json_atomic(json_path, {"kind": "arraygpt-compare", "threshold": limit, "confidence": args.confidence,
                                      "comparisons": [r.to_json() for r in rows],
                                      "only_in_base": only_base, "only_in_new": only_new})
    if not rows:
        raise ArrayGPTError("no scenario ran successfully in both files")
    slower = [r for r in rows if r.verdict == "slower"]
    worse = [r for r in rows if r.numerics == "worse"]
    few = [r for r in rows if r.verdict == "too few repeats"]
    stderr.print(f"{len(slower)} slower, {sum(r.verdict == 'faster' for r in rows)} faster, "
                 f"{sum(r.verdict == 'no change' for r in rows)} unchanged"
                 + (f", {len(few)} without a verdict (fewer than {args.min_repeats} repeats a side)" if few else "")
                 + f"; numerics: {len(worse)} worse than the budget")
    doubtful = [r for r in rows if {"unsteady", "invalid"} & set(r.validity)]
    if doubtful:
        stderr.print(f"[yellow]note:[/] {len(doubtful)} scenario(s) compared from unsteady or invalid runs (see the "
                     "validity column): a verdict there may be the machine's, not the code's")
    return 1 if slower or worse else 0
