"""Options several commands share, and small helpers for reading prompts and loading models."""

from __future__ import annotations

import argparse
import os

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from arraygpt.backends import BACKENDS
from arraygpt.engine.families import PRESETS
from arraygpt.engine.errors import ArrayGPTError

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def fraction(text: str, option: str, example: str) -> float:
    """'10%' or '0.1' -> 0.1, between 0% and 100% (exclusive), or one line naming the option."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise ArrayGPTError(f"{option} takes a fraction or a percentage such as {example}, got '{text}'") from None
    if not 0 <= value < 1:
        raise ArrayGPTError(f"{option} must be between 0% and 100%, got '{text}'")
    return value


def report_console() -> Console:
    """Tables for people: the terminal's width, or when piped to a file or a CI log COLUMNS or 100 (the
    tables are made to read whole in 100)."""
    if sys.stdout.isatty():
        return Console()
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() and int(columns) >= 40 else 100)


def add_model_options(parser, default_model="124M"):
    group = parser.add_argument_group("model and hardware")
    group.add_argument("--model", default=default_model, metavar="SPEC",
                       help=f"preset ({', '.join(PRESETS)}; random weights), a local Hugging Face "
                            f"checkpoint directory (GPT-2, Llama, Qwen2, Mistral), or a hub id (default: {default_model})")
    group.add_argument("--backend", default="numpy", metavar="NAME",
                       help=f"array library: {', '.join(BACKENDS)}, or auto: the fastest usable one for the "
                            "workload (a GPU backend if there is a GPU; on a CPU numpy for one prompt, jax for "
                            "several; see docs/backends.md) (default: numpy)")
    group.add_argument("--device", default=None, metavar="DEV",
                       help="cpu, gpu, gpu:1, tpu (default: the library's default device)")
    group.add_argument("--dtype", default="float32", metavar="DTYPE",
                       help="float32, float16, bfloat16 or float64 (default: float32)")
    group.add_argument("--weights", default=None, metavar="DTYPE",
                       help="store the matrices the products read (linear weights, wte) in this dtype, with "
                            "--dtype for everything else: --dtype float32 --weights bfloat16 is mixed precision "
                            "(half the bytes per decode step; jax, torch; float16 also numpy, cupy) (default: "
                            "the --dtype)")
    group.add_argument("--precision", default="float32", choices=("float32", "tf32"),
                       help="float32 products in IEEE float32 on every backend and device (default), or tf32: "
                            "TensorFloat-32 tensor cores (NVIDIA GPUs; jax, torch, cupy), faster and less exact")
    group.add_argument("--model-seed", type=seed, default=0, metavar="S",
                       help="seed of a preset's synthetic weights (default: 0)")
    add_mesh_options(parser)


def add_mesh_options(parser, several: bool = False):
    group = parser.add_argument_group("sharding (jax, jax-loop)")
    group.add_argument("--mesh", default=None, metavar="LIST" if several else "MESH",
                       help="split the model over a device mesh: dp=N (data parallel: the batch), tp=N (tensor "
                            "parallel: heads, MLP, vocabulary), or both, such as dp=2,tp=4; it must fit the "
                            "devices present (`arraygpt info` lists the meshes that do)"
                            + ("; several meshes separated by ';', such as 'tp=2;dp=2,tp=4'" if several else ""))
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="run as one program across processes: the coordinator's address (or "
                            "JAX_COORDINATOR_ADDRESS); with --num-processes and --process-id")
    group.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="processes in the run (or JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="this process's id, 0..N-1 (or JAX_PROCESS_ID)")


def join_processes(args, backends=()) -> None:
    """A multi-process run starts here, before any backend asks JAX for its devices. Its options are refused
    where they would be ignored: the process count or id without a coordinator, a coordinator for a backend
    that runs in one process (backends: the names asked for)."""
    import os
    from arraygpt.backends import BACKENDS, initialize_distributed
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not coordinator:
        if args.num_processes is not None or args.process_id is not None:
            raise ArrayGPTError("--num-processes and --process-id go with --coordinator HOST:PORT (or "
                                "JAX_COORDINATOR_ADDRESS): without one the run is a single process")
        return
    single = [name for name in backends if name in BACKENDS and not BACKENDS[name].meshes]
    if single:
        raise ArrayGPTError(f"--coordinator: a multi-process run is for {', '.join(n for n, r in BACKENDS.items() if r.meshes)}; "
                            f"{single[0]} runs in one process")
    initialize_distributed(args.coordinator, args.num_processes, args.process_id)


def seed(text: str) -> int:
    """An argparse type: a seed is a whole number from 0 to 2**63 - 1 (NumPy's generators take no negative one)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 63:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to 2**63 - 1, got {text!r}")
    return value


@contextmanager
def naming_the_path(path):
    """An OSError from writing `path` without a file name of its own (a write past `ulimit -f`, a full disk
    inside a library) comes out naming it, so the one-line error says which file."""
    try:
        yield
    except OSError as err:
        if err.filename:
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def read_text_arg(text: str) -> str:
    """'-' reads standard input. Text that is not valid UTF-8 is one clear error, not a traceback."""
    from arraygpt.engine.errors import TokenizerError
    from arraygpt.engine.tokenizer import check_unicode
    if text == "-":
        if sys.stdin is None:  # started with standard input closed (`<&-`)
            raise TokenizerError("standard input is closed: pass the text as an argument, or pipe it in with -")
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TokenizerError(f"standard input is not valid UTF-8 (byte 0x{data[err.start]:02x} at byte "
                                 f"{err.start}); pass UTF-8 encoded text") from None
    check_unicode(text)  # a command-line argument: Python kept its bad bytes as lone surrogates
    return text


@contextmanager
def progress_bar(description: str):
    """A rich progress bar on stderr, started only if the work reports progress (so quick work prints nothing)."""
    progress, task = None, None

    def update(done: int, total: int):
        nonlocal progress, task
        if progress is None:
            progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                                console=stderr, transient=True)
            progress.start()
            task = progress.add_task(description, total=total)
        progress.update(task, completed=done)

    try:
        yield update
    finally:
        if progress is not None:
            progress.stop()


def load_model_with_progress(args, batch: int = 1):
    from arraygpt.backends import get_backend
    from arraygpt.engine import load_model
    join_processes(args, [args.backend])
    options = {"precision": args.precision, "mesh": args.mesh} | ({"batch": batch} if args.backend == "auto" else {})
    backend = get_backend(args.backend, device=args.device, **options)
    if args.backend == "auto":
        stderr.print(f"[dim]--backend auto chose {backend.name} on {backend.device_name()}[/]")
    with progress_bar(f"writing synthetic {args.model} checkpoint (first use only)") as update:
        return load_model(args.model, backend=backend, dtype=args.dtype, seed=args.model_seed, progress=update,
                          weights=args.weights)


def warn_if_synthetic(model):
    if model.synthetic:
        mark = model.source.synthetic
        stderr.print(f"[yellow]note:[/] {mark['preset']} has random weights (synthetic, seed {mark['seed']}): "
                     "the text below is noise. Pass --model DIR (or a hub id) for real weights.")
