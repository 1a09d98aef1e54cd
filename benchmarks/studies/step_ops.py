"""Where one decode step's time goes, per kind of operation, in our torch step and in ONNX Runtime's, each
read from its own profiler on the same model, batch and prompt (issue 30: where batch 8 loses to ORT).

    python -m arraygpt.benchmarks.studies.step_ops --model 124M --batch 8 --steps 32
    python -m arraygpt.benchmarks.studies.step_ops --model tiny --batch 2 --steps 4 --json out.json

torch: torch.profiler's self time per aten/oneDNN op; ORT: its own profiler (SessionOptions.enable_profiling),
each node's kernel time. A decode step's ops are a generation of `steps` new tokens less a prefill-only
generation (torch), or every run after the prompt's (ORT); its time is the span from the prompt's token to the
last, as each reaches the host (one run, never a difference of two). Each op is put in one kind (KINDS below, by op name;
ORT's attention products by node name); "outside the ops" is the step's time under the profiler less the ops'
sum (Python, dispatch, the host loop, and the profiler's own cost); "step, no profiler" is timed apart, best of
three. Figures are ms per step; one process, the two runtimes one after the other: the machine's speed may
differ between them (compare each column's ops with its own profiled step, and the two within one study only).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

from arraygpt.engine import load_model
from arraygpt.engine.errors import ArrayGPTError

from ..jsonio import write_json_atomic
from ..measure.environment import environment
from ..measure.timing import fixed_prompts, summarize_run
from ..outputs import check_json_output
from ..runners import PeerNotInstalled
from ..runners.ort import OrtRunner

KIND = "arraygpt-study"

# op name -> kind; anything else is "other ops"
KINDS = {
    "weight products": {"mkldnn::_linear_pointwise", "aten::addmm", "aten::mm", "aten::linear", "MatMul", "Gemm",
                        "MatMulNBits"},
    "attention": {"aten::bmm", "aten::_softmax", "aten::_scaled_dot_product_flash_attention_for_cpu", "FusedMatMul",
                  "Softmax", "Attention", "MultiHeadAttention", "GroupQueryAttention"},
    "layer norms": {"aten::native_layer_norm", "LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                    "SkipSimplifiedLayerNormalization"},
    "activations": {"aten::gelu", "aten::tanh", "aten::silu", "FastGelu", "BiasGelu", "Gelu"},
    "cache and copies": {"aten::copy_", "aten::cat", "aten::index_put_", "aten::index_copy_", "aten::select_scatter",
                         "aten::slice_scatter", "Concat"},
}
ORDER = [*KINDS, "other ops", "outside the ops", "step, profiled", "step, no profiler"]
ATTENTION_PRODUCT = re.compile(r"attn/MatMul")  # ORT: the attention's own MatMuls (q k^T, p v), by node name


def kind_of(op: str, node: str = "") -> str:
    if op == "MatMul" and ATTENTION_PRODUCT.search(node):
        return "attention"
    return next((kind for kind, ops in KINDS.items() if op in ops), "other ops")


def per_kind(ops: dict[str, tuple[float, int]], profiled_ms: float, wall_ms: float) -> dict[str, dict]:
    """{op or (op, node): (ms per step, calls per step)} -> {kind: {"ms", "calls", "ops"}}, with the step's time
    under the profiler and without it."""
    kinds = {k: {"ms": 0.0, "calls": 0.0, "ops": {}} for k in ORDER}
    for key, (ms, calls) in ops.items():
        op, node = key if isinstance(key, tuple) else (key, "")
        row = kinds[kind_of(op, node)]
        row["ms"] += ms
        row["calls"] += calls
        row["ops"][op] = row["ops"].get(op, 0.0) + ms
    inside = sum(kinds[k]["ms"] for k in ORDER[:-3])
    kinds["outside the ops"]["ms"] = profiled_ms - inside
    kinds["step, profiled"]["ms"] = profiled_ms
    kinds["step, no profiler"]["ms"] = wall_ms
    return kinds


def torch_ops(model, prompts, steps: int) -> tuple[dict[str, tuple[float, int]], float]:
    """({op: (ms, calls) per decode step}, ms per decode step under the profiler)."""
    from torch.profiler import ProfilerActivity, profile

    def totals(new_tokens):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ms = ms_per_step(lambda on_token: stream(model, prompts, new_tokens, on_token))
        return {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()}, ms

    (full, profiled_ms), (prefill, _) = totals(steps + 1), totals(1)
    return ({op: ((ms - prefill.get(op, (0.0, 0))[0]) / steps, (n - prefill.get(op, (0.0, 0))[1]) / steps)
             for op, (ms, n) in full.items()}, profiled_ms)


def stream(model, prompts, new_tokens: int, on_token) -> None:
    for _ in model.stream(prompts, max_new_tokens=new_tokens):
        on_token()


def ms_per_step(run) -> float:
    """run(on_token) generates tokens, calling on_token as each reaches the host: ms per decode step as the bench
    counts it (summarize_run: the span from the first token, the prompt's, to the last), 0.0 for a prefill alone.
    One span of one run, never a difference of two runs, so a busy machine can slow it but never make it negative."""
    times: list[float] = []
    start = time.perf_counter()
    run(lambda: times.append(time.perf_counter()))
    decode_tps = summarize_run(times, start, batch=1, prompt_len=1).get("decode_tps")  # steps per second
    return 1e3 / decode_tps if decode_tps else 0.0


def wall_per_step(run, repeats: int = 3) -> float:
    """The best of `repeats` ms_per_step: the decode step without the prefill and without a profiler."""
    return min(ms_per_step(run) for _ in range(repeats))


def ort_ops(runner: OrtRunner, spec: str, prompts, steps: int) -> tuple[dict[tuple[str, str], tuple[float, int]], float]:
    """({(op, node): (ms, calls) per decode step}, ms per decode step under the profiler, host loop included)."""
    session = runner.sessions(spec)[0]
    profiled_ms = ms_per_step(lambda on_token: runner.run(spec, prompts, steps + 1, on_token))
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    decode_start = runs[-(steps + 1)]["ts"] + runs[-(steps + 1)]["dur"]  # after the last generation's prompt
    ops: dict = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= decode_start:
            key = (e["args"].get("op_name", "?"), e["name"].removesuffix("_kernel_time"))
            ops[key][0] += e["dur"] / 1e3 / steps
            ops[key][1] += 1 / steps
    return {k: tuple(v) for k, v in ops.items()}, profiled_ms


def study(spec: str, batch: int, prompt_len: int, steps: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a preset's random weights: its speed is real, which is all this reads
        model = load_model(spec, backend="torch", dtype="float32")
    prompts = fixed_prompts(batch, prompt_len, model.config.vocab_size)
    model.generate(prompts, max_new_tokens=4)  # warm-up (the one-row product compiles here)
    ours = per_kind(*torch_ops(model, prompts, steps),
                    wall_per_step(lambda on_token: stream(model, prompts, steps + 1, on_token)))
    model = None  # its weights leave memory before ORT loads its own
    runner = OrtRunner()  # the wall time without the profiler
    runner.run(spec, prompts, 4, lambda: None)  # load (export on first use) and warm up
    wall = wall_per_step(lambda on_token: runner.run(spec, prompts, steps + 1, on_token))
    del runner
    with tempfile.TemporaryDirectory() as profiles:
        runner = OrtRunner(profile_to=f"{profiles}/ort")
        runner.run(spec, prompts, 4, lambda: None)  # warm-up: ort_ops reads the last generation's runs only
        ort = per_kind(*ort_ops(runner, spec, prompts, steps), wall)
    return {"model": spec, "batch": batch, "prompt_len": prompt_len, "steps": steps, "threads": runner.threads,
            "torch": ours, "ort": ort}


def table(result: dict) -> str:
    lines = [f"{result['model']} float32, batch {result['batch']}, prompt {result['prompt_len']}, "
             f"{result['steps']} decode steps, {result['threads']} threads: ms per step (calls per step)",
             f"{'kind':18s} {'torch':>16s} {'ort':>16s}  largest ops (torch | ort)"]
    for kind in ORDER:
        cells, tops = [], []
        for side in ("torch", "ort"):
            row = result[side][kind]
            cells.append(f"{row['ms']:7.2f}" + (f" ({row['calls']:5.1f})" if row["calls"] else " " * 8))
            top = sorted(row["ops"].items(), key=lambda kv: -kv[1])[:2]
            tops.append(", ".join(f"{op} {ms:.2f}" for op, ms in top))
        lines.append(f"{kind:18s} {cells[0]:>16s} {cells[1]:>16s}  " + (" | ".join(tops) if any(tops) else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arraygpt.benchmarks.studies.step_ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="124M", help="a preset, checkpoint directory or hub id (default 124M)")
    parser.add_argument("--batch", type=int, default=8, help="prompts decoded together (default 8)")
    parser.add_argument("--prompt-len", type=int, default=16, help="tokens per prompt (default 16)")
    parser.add_argument("--steps", type=int, default=32, help="decode steps profiled (default 32)")
    parser.add_argument("--json", help="write the result here as JSON (a new path, or an earlier study's with --force)")
    parser.add_argument("--force", action="store_true", help="replace the earlier study at --json")
    args = parser.parse_args(argv)
    if min(args.batch, args.prompt_len, args.steps) < 1:
        parser.error("--batch, --prompt-len and --steps must be at least 1")
    if args.json:
        try:  # before any work: never overwrite a file this study did not write
            check_json_output(args.json, KIND, replace=args.force)
        except ArrayGPTError as err:
            parser.error(str(err))
    print(f"profiling torch, then ORT: {args.model} batch {args.batch}, {args.steps} steps", file=sys.stderr, flush=True)
    try:
        result = study(args.model, args.batch, args.prompt_len, args.steps)
    except (ArrayGPTError, PeerNotInstalled) as err:  # a model that is not there, no onnxruntime: one line
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(table(result))
    if args.json:
        write_json_atomic(args.json, {"kind": KIND, "study": "step_ops", "date": time.strftime("%Y-%m-%d %H:%M"),
                                      "environment": environment(), "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
