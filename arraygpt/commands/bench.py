"""arraygpt bench: tokens/s, latency, memory and % of roofline per backend, beside the peers."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from arraygpt.engine.errors import ArrayGPTError

from .options import fraction, report_console, stderr
from .parity import parse_backend_list


def int_list(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ArrayGPTError(f"expected comma-separated integers, got '{text}'") from None


def str_list(text):
    return [v.strip() for v in text.split(",") if v.strip()]


def mesh_list(text):
    """'none;tp=2;dp=2,tp=4' -> [None, 'tp=2', 'dp=2,tp=4'] (checked as meshes)."""
    from arraygpt.backends.mesh import parse_mesh
    meshes = []
    for item in filter(None, (v.strip() for v in text.split(";"))):
        meshes.append(None if item == "none" else parse_mesh(item).label)
    return meshes


def add_parser(sub):
    from arraygpt.benchmarks.scenarios import available_suites
    p = sub.add_parser(
        "bench", help="benchmark backends (the main job)",
        description="Measure prefill and decode tokens/s, time to first token, per-token latency, peak memory, "
                    "% of this machine's roofline and parity with a float64 reference, for every usable backend "
                    "beside Hugging Face transformers and picoGPT. Each runner works in a process of its own. "
                    "With no arguments: the quick suite on the synthetic 124M model, float32.")
    p.add_argument("--suite", default="quick", help=f"{', '.join(available_suites())}, or a .toml file (default: quick)")
    p.add_argument("--backends", default=None, metavar="LIST",
                   help="comma-separated NAME or NAME:DEVICE (default: every usable backend)")
    p.add_argument("--models", type=str_list, default=None, metavar="LIST", help="override the suite's models")
    p.add_argument("--dtypes", type=str_list, default=None, metavar="LIST", help="override the suite's dtypes")
    p.add_argument("--weights", type=str_list, default=None, metavar="LIST",
                   help="the dtypes the matrices are stored in (mixed precision: --dtypes float32 --weights "
                        "float32,bfloat16 gives a float32 row and a float32-with-bfloat16-weights row); weights "
                        "wider than the dtype are skipped; q8_0 is llama.cpp's 8-bit format, a row of its own "
                        "that only --peer llamacpp runs")
    p.add_argument("--mesh", type=mesh_list, default=None, metavar="LIST",
                   help="device meshes for jax and jax-loop, ';'-separated, 'none' for one device: such as "
                        "'none;tp=2;dp=2,tp=4' (each its own row; on simulated CPU devices tokens/s says nothing "
                        "about scaling)")
    p.add_argument("--precision", type=str_list, default=None, metavar="LIST",
                   help="float32 (IEEE float32 products, the default) and/or tf32 (float32 products on NVIDIA "
                        "tensor cores: jax, torch, cupy on gpu); each is its own row, never merged")
    p.add_argument("--batch-sizes", type=int_list, default=None, metavar="LIST",
                   help="override the batch sizes of the decode groups (prefill groups keep theirs, unless "
                        "--new-tokens is also given)")
    p.add_argument("--prefill-batch-sizes", type=int_list, default=None, metavar="LIST",
                   help="override the batch sizes of the prefill groups (new_tokens 1)")
    p.add_argument("--prompt-lens", type=int_list, default=None, metavar="LIST", help="override prompt lengths")
    p.add_argument("--new-tokens", type=int_list, default=None, metavar="LIST", help="override new tokens")
    p.add_argument("--threads", type=int_list, default=None, metavar="LIST",
                   help="CPU threads as a scenario axis, such as 1,2: each runner's process is pinned to that many "
                        "cores and each library told through its own control (BLAS and OpenMP pools, torch's "
                        "set_num_threads; XLA sizes its pool from the cores); in the scenario id as numpy@1t "
                        "(default: each library's own choice)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per scenario")
    p.add_argument("--target-ci", default=None, metavar="PCT",
                   help="adaptive repeats: after --repeats, repeat each scenario until the 95%% interval of its "
                        "headline median is within +-PCT (such as 3%%), or --ci-budget runs out; the width reached "
                        "is recorded, and a row that missed it is marked unsteady")
    p.add_argument("--rounds", type=int, default=None, metavar="N",
                   help="run every runner N times, alternating the order (ABC CBA ABC), each round with its share "
                        "of the repeats, pooled: drift of a shared machine then falls on every runner alike instead "
                        "of biasing the ratios (default: the suite's rounds, else 1)")
    p.add_argument("--ci-budget", type=float, default=60.0, metavar="SECONDS",
                   help="timed seconds per scenario that --target-ci may spend (default: 60)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up runs per scenario (the first includes compiling)")
    from arraygpt.benchmarks.runners import PEERS
    p.add_argument("--peer", type=str_list, default=None, metavar="LIST",
                   help="peer rows: " + " | ".join(f"{name}: {peer.what}" for name, peer in PEERS.items())
                        + ". Default: the suite's; --peer none for none. A peer that is not installed gives its "
                        "row's reason and the install line. Peers run on the devices of the backends: a GPU run "
                        "compares with HF on that GPU")
    p.add_argument("--no-roofline", action="store_true", help="skip the bandwidth and matmul probes")
    p.add_argument("--no-parity", action="store_true", help="skip the float64 parity check")
    p.add_argument("--json", metavar="PATH", help="write every repeat, the machine and versions as JSON "
                   "(default: out/bench-DATE.json); rewritten after each scenario, so an interrupted run keeps "
                   "what finished. PATH must be new (or an earlier bench result, with --force); it is locked "
                   "while the bench runs")
    p.add_argument("--force", action="store_true", help="replace an earlier bench result at --json PATH (any "
                   "other existing file is never overwritten); run a GPU suite (gpu, gpu-check) on a machine "
                   "without a GPU")
    p.add_argument("--format", default="table", choices=("table", "csv", "jsonl", "md"),
                   help="what goes to stdout at the end: the tables (default), or one row per scenario as CSV, JSON "
                        "lines or a Markdown table, for spreadsheets and dashboards (the --json file is always written)")
    p.add_argument("--list", action="store_true", help="print the scenarios and exit")


def peer_devices(backends) -> list[str | None]:
    """Where the peers run: the CPU (None) and/or 'gpu', wherever the backends run. A backend without a
    device is asked for its default (JAX defaults to a GPU where it has one)."""
    from arraygpt.backends import BackendError, get_backend
    kinds = set()
    for name, device in backends:
        if device is not None:
            kinds.add("gpu" if device.startswith(("gpu", "cuda")) else device.split(":")[0])
            continue
        try:
            kinds.add(get_backend(name).device_key().split(":")[0])
        except BackendError:
            kinds.add("cpu")  # it fails in its worker, with the reason; the peers stay on the CPU
    return [None] * ("cpu" in kinds) + ["gpu"] * ("gpu" in kinds) or [None]


def run(args) -> int:
    from arraygpt.backends import SPEED_BACKENDS, usable_backends
    from arraygpt.benchmarks.outputs import check_json_output, exclusive_output
    from arraygpt.benchmarks.scenarios import expand, load_suite

    suite = load_suite(args.suite)
    if suite.get("device") == "gpu" and not args.force and not has_nvidia_gpu():
        raise ArrayGPTError(f"suite {suite['name']} is for a GPU machine, and this one has no NVIDIA GPU (no driver "
                            "under /proc/driver/nvidia); pick a CPU suite (quick, peers, standard), or pass --force to "
                            "run it here anyway")
    if args.backends:
        backends = parse_backend_list(args.backends)
        from arraygpt.backends import BACKENDS, installed
        missing = [name for name, _ in backends if not installed(name)]
        peers_asked = _suite_peers(suite) if args.peer is None else any(p != "none" for p in args.peer)
        if len(missing) == len(backends) and not peers_asked:
            raise ArrayGPTError("nothing to measure: " + "; ".join(f"{name} needs {BACKENDS[name].library}, which is not "
                                                                    f"installed ({BACKENDS[name].install})"
                                                                    for name in dict.fromkeys(missing)))
    else:
        backends = [(name, None) for name in usable_backends(SPEED_BACKENDS)]
    target_ci = None if args.target_ci is None else fraction(args.target_ci, "--target-ci", "3%")
    if target_ci == 0 or not args.ci_budget > 0:
        raise ArrayGPTError("--target-ci must be above 0% and --ci-budget above 0 seconds")
    rounds = suite.get("rounds", 1) if args.rounds is None else args.rounds
    if rounds < 1:
        raise ArrayGPTError(f"--rounds must be 1 or more, got {rounds}")
    overrides = {"model": args.models, "dtype": args.dtypes, "weights": args.weights, "precision": args.precision,
                 "mesh": args.mesh, "threads": args.threads,
                 "batch": args.batch_sizes, "prefill_batch": args.prefill_batch_sizes,
                 "prompt_len": args.prompt_lens, "new_tokens": args.new_tokens, "repeats": args.repeats,
                 "warmup": args.warmup}
    peers = None if args.peer is None else [p for p in args.peer if p != "none"]
    scenarios = expand(suite, backends, overrides, peers, peer_devices(backends))
    if not scenarios:
        from arraygpt.benchmarks.judge.roofline import QUANTIZED
        quantized = [w for w in args.weights or () if w in QUANTIZED]
        hint = (f"{quantized[0]} weights are llama.cpp's own format: add --peer llamacpp" if quantized else
                "check --backends, --dtypes, --weights and --peer against the suite (--list shows what runs)")
        raise ArrayGPTError(f"these options leave no scenario to run; {hint}")
    from arraygpt.backends import BACKENDS
    if args.mesh and any(args.mesh):
        single = [name for name, _ in backends if not BACKENDS[name].meshes]
        if single:
            stderr.print(f"[yellow]note:[/] {', '.join(single)} {'runs' if len(single) == 1 else 'run'} on one "
                         f"device: no mesh rows for {'it' if len(single) == 1 else 'them'} (meshes: "
                         f"{', '.join(n for n, r in BACKENDS.items() if r.meshes)})")
    import os
    cores = len(os.sched_getaffinity(0))
    asked = max((s.threads for s in scenarios if s.threads), default=0)
    if asked > cores:  # more threads than cores: the row would name a count it never ran on
        raise ArrayGPTError(f"--threads {asked}: this process may use {cores} core(s); ask for at most {cores}")
    # Every round times at least one repeat of every scenario: a suite's rounds give way to fewer repeats
    # (--repeats 1: one round); asked for on the command line, they must fit.
    fewest = min((s.repeats for s in scenarios), default=1)
    if rounds > fewest:
        if args.rounds is not None:
            raise ArrayGPTError(f"--rounds {rounds} needs at least {rounds} repeats a scenario (the fewest here: "
                                f"{fewest}); raise --repeats or lower --rounds")
        rounds = fewest
    if args.list:
        for s in scenarios:
            print(s.id)
        return 0
    check_models(scenarios)
    json_path = check_json_output(args.json if args.json is not None else
                                  f"out/bench-{datetime.datetime.now():%Y%m%d-%H%M%S}.json",
                                  "arraygpt-bench", replace=args.force)
    with exclusive_output(json_path):
        return _run_locked(args, suite, scenarios, overrides, json_path, target_ci, rounds)


def slow_paths(scenarios) -> list[tuple[str, str, str]]:
    """(runner, dtype, why) for each backend asked to run a dtype it declares far slower than float32."""
    from arraygpt.backends import BACKENDS
    found = {}
    for s in scenarios:
        declared = dict(BACKENDS[s.runner].slow_dtypes) if s.runner in BACKENDS else {}
        for dtype in (s.dtype, s.weights):
            if dtype in declared:
                found[(s.runner, dtype)] = declared[dtype]
    return [(runner, dtype, why) for (runner, dtype), why in found.items()]


def _run_locked(args, suite, scenarios, overrides, json_path, target_ci, rounds) -> int:
    from arraygpt.benchmarks.harness import Bench
    from arraygpt.benchmarks.present.tables import probes_table, results_table

    console = report_console()
    runners = list(dict.fromkeys(s.runner for s in scenarios))
    each = sorted({(s.warmup, s.repeats) for s in scenarios})
    stderr.print(f"plan: {len(scenarios)} scenario(s) x {rounds} round(s) on {len(runners)} runner(s) ({', '.join(runners)}); "
                 + ("warm-up {} + {} timed repeat(s) each".format(*each[0]) if len(each) == 1 else
                    f"{min(r for _, r in each)}-{max(r for _, r in each)} timed repeats each")
                 + f"; results to {json_path}", highlight=False)
    for runner, dtype, why in slow_paths(scenarios):
        stderr.print(f"warning: {runner} {dtype}: {why}", highlight=False)
    heartbeat = Heartbeat(enabled=not stderr.is_terminal)
    # Off a terminal the bar draws nothing, so it is disabled: no refresh thread then shares rich's locks
    # with the main thread, which a Ctrl-C landing mid-print could leave held (a bench that never ends).
    with heartbeat, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr, transient=True, disable=not stderr.is_terminal) as progress:
        total = len(scenarios) * rounds
        task = progress.add_task("starting", total=total)
        finished, started = [0], time.monotonic()

        def on_event(event):
            kind = event["event"]
            if kind == "reference":
                progress.update(task, description=f"float64 reference for {event['model']}")
            elif kind == "probe":
                progress.update(task, description=f"{event['runner']}: roofline probes")
            elif kind == "drift_probe":
                progress.update(task, description="machine probe (validity)")
            elif kind == "parity":
                progress.update(task, description=f"{event['runner']}: parity")
            elif kind == "start":
                progress.update(task, description=event["id"])
                heartbeat.now_running(event["id"])
            elif kind == "moved":
                progress.console.print(f"[yellow]note:[/] another file appeared at {escape(event['from'])} during the "
                                       f"run and is left as it is; the results go to {escape(event['to'])}",
                                       highlight=False)
            elif kind == "done":
                progress.advance(task)
                finished[0] += 1
                why = _why(event.get("message"))
                heartbeat.now_running(None)
                if not stderr.is_terminal:  # CI, `| tee`, a log file: the bar draws nothing there
                    elapsed = time.monotonic() - started
                    left = elapsed / finished[0] * (total - finished[0])  # the pace so far: a rough guide only
                    pace = f"; about {left / 60:.0f} min left at this pace" if finished[0] < total and elapsed > 60 else ""
                    stderr.print(f"[{finished[0]}/{total}] {escape(event['id'])}: {event['status']}{escape(why)} "
                                 f"({elapsed:.0f} s{pace})", highlight=False)
                elif event["status"] != "ok":
                    progress.console.print(f"[yellow]{escape(event['id'])}: {event['status']}{escape(why)}[/]",
                                           highlight=False)

        from arraygpt.benchmarks.judge.validity import RULES
        bench = Bench(scenarios, {"name": suite["name"], "description": suite.get("description", ""),
                                  "overrides": {k: v for k, v in overrides.items() if v is not None},
                                  "validity": RULES | suite.get("validity", {}), "rounds": rounds},
                      json_path=json_path, roofline=not args.no_roofline, parity=not args.no_parity,
                      on_event=on_event, target_ci=target_ci, ci_budget_s=args.ci_budget, rounds=rounds)
        try:
            run = bench.run()
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: the worker is ended, the rows so far are kept
            progress.stop()
            kept = len(bench.record.results)
            if kept:
                stderr.print(f"interrupted: {kept} finished scenario(s) kept in {bench.json_path} (\"complete\": false)")
            else:
                stderr.print("interrupted before any scenario finished: no rows"
                             + (f"; {bench.json_path} records the run as incomplete" if Path(bench.json_path).exists()
                                else "; nothing was written"))
            raise
    if args.format == "table":
        console.print(results_table(run))
        if run.probes:
            console.print(probes_table(run))
    else:
        from arraygpt.benchmarks.present.formats import flat_rows, render
        print(render(flat_rows(run, run.label), args.format), end="")
    stderr.print(f"results: {bench.json_path}")
    meters = [r.metrics.energy or {} for r in run.ok_results]
    if meters and not any(m.get("meter") for m in meters):
        reason = next((m["reason"] for m in meters if m.get("reason")), "no meter")
        stderr.print(f"energy: not measured ({escape(reason)})", highlight=False)
    failed = [r for r in run.results if r.status == "error" or r.round_errors]
    if not run.ok_results and not failed:
        reasons = sorted({r.message or "" for r in run.results if r.status == "skipped"})
        raise ArrayGPTError("nothing was measured: every scenario was skipped"
                            + (f" ({'; '.join(reasons)[:300]})" if reasons else ""))
    validity = run.validity or {}
    colour = {"valid": "green", "unsteady": "yellow"}.get(validity.get("status"), "red")
    stderr.print(f"[{colour}]{escape(run.validity_line)}[/]", highlight=False)
    if failed:
        stderr.print(f"[red]{len(failed)} scenario(s) failed[/] (a crash or error in a worker, in any round; "
                     f"first: {escape(failed[0].id)}: {escape(_first_error(failed[0]))})", highlight=False)
        return 1
    return 0


class Heartbeat:
    """Off a terminal (CI, a log file), a line at least every 30 s while one scenario runs long, so a log never
    goes silent for minutes. A thread of its own that writes to sys.stderr directly: it takes none of rich's
    locks, which the main thread may hold when a Ctrl-C lands."""

    EVERY_S = 30.0

    def __init__(self, enabled: bool):
        import threading
        self.enabled, self.running, self.since = enabled, None, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True) if enabled else None

    def now_running(self, scenario_id: str | None) -> None:
        self.running, self.since = scenario_id, time.monotonic()

    def _beat(self):
        import sys
        last = time.monotonic()
        while not self._stop.wait(1.0):
            running, since, now = self.running, self.since, time.monotonic()
            if running and now - max(last, since) >= self.EVERY_S:
                sys.stderr.write(f"  ... {running}: still running ({now - since:.0f} s)\n")
                sys.stderr.flush()
                last = now

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)


def has_nvidia_gpu() -> bool:
    """Whether the NVIDIA driver sees a GPU here, asked of the driver's files: no GPU library is loaded in the
    bench's own process (it would take GPU memory that its workers need)."""
    try:
        return any(Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return False


def check_models(scenarios) -> None:
    """Before any worker: every model resolves (an unknown name, a damaged directory, an unwritable cache are
    its one-line error), and every scenario fits its model's context."""
    from arraygpt.engine.families import read_config
    from arraygpt.engine.prompts import positions_needed
    from arraygpt.engine.source import resolve_model
    context = {}
    for spec in dict.fromkeys(s.model for s in scenarios):
        context[spec] = read_config(resolve_model(spec).directory / "config.json").n_positions
    for s in scenarios:
        need = positions_needed(s.prompt_len, s.new_tokens)
        if s.model in context and need > context[s.model]:
            raise ArrayGPTError(f"scenario {s.id}: a {s.prompt_len}-token prompt and {s.new_tokens} new tokens need "
                                f"{need} positions, more than {s.model}'s context of {context[s.model]}; lower "
                                "--prompt-lens or --new-tokens")


def _why(message) -> str:
    """' (the reason)' for a skipped or failed scenario's line: its message's first line, shortened."""
    if not message or not str(message).strip():
        return ""
    first = str(message).strip().splitlines()[0]
    first = first.split(": ", 1)[1] if first.startswith(("BackendUnavailable: ", "BackendError: ")) else first
    return f" ({first[:160]}{'...' if len(first) > 160 else ''})"


def _suite_peers(suite: dict) -> bool:
    """Whether any group of the suite names a peer (a run of peers alone still measures something)."""
    return any((suite.get("defaults", {}) | group).get("peers") for group in suite.get("group", []))


def _first_error(result) -> str:
    message = result.message if result.status == "error" else (result.round_errors or [""])[0]
    return (message or "").strip().splitlines()[0][:200] if message and message.strip() else "no message"
