"""How fast the libraries we bind compute GPT-2's weight products from half-width weights on this CPU.

    python -m arraygpt.benchmarks.studies.half_products            # 124M's matrices, batch 1 and 8, every way
    python -m arraygpt.benchmarks.studies.half_products --json out.json --ways jax-bf16,torch-bf16

A decode step reads every weight matrix once: 12 layers x (c_attn, attn c_proj, c_fc, mlp c_proj) and
wte, 124M numbers, 249 MB in a half type (more than this CPU's L3). One "sweep" computes each matrix's
product with an activation of B rows, as the engine does (w [n_out, n_in] @ x.T); the figure is the
weights' bytes over a sweep's median time: GB/s of weights read. Each way runs in its own process (XLA
reads its flags once, at start), all on the same matrices (seeded), and each way's outputs are checked
against a float64 product of the same half-rounded weights so that a fast wrong kernel shows as wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from arraygpt.backends import get_backend
from arraygpt.engine.config import ITEMSIZE, PRESETS
from arraygpt.engine.errors import ArrayGPTError

from ..jsonio import write_json_atomic
from ..judge.roofline import matrix_shapes
from ..measure.environment import environment
from ..measure.load import MachineLoad
from ..outputs import check_json_output

KIND = "arraygpt-study"


@dataclasses.dataclass(frozen=True)
class Way:
    library: str     # numpy, jax, torch
    weights: str     # the stored dtype of the matrices
    product: str     # engine: x cast to the weights' dtype, the product in it, the result widened
                     # f32acc: half inputs, float32 result (jnp preferred_element_type / torch out_dtype)
                     # upcast: the weights widened to float32 inside the compiled step, then a float32 product
                     # linear: torch.nn.functional.linear(x, w) (oneDNN's linear, x @ w.T)
                     # reduce: sum(widen(w)[:, None, :] * x[None], -1): the widening inside a reduction
                     #   that a compiler can fuse into one pass over the half weights
                     # adapter: the adapter's own product (Backend.product), one call per matrix, as a
                     #   decode step makes it (torch on the CPU: backends/torch_products.py)
                     # nn: the weights stored [n_in, n_out] (transposed, contiguous), x @ w: the BLAS's NN case
                     # mkl-packed, onednn-packed: the weights packed once for the batch (torch's
                     #   _mkl_reorder_linear_weight / mkldnn _reorder_linear_weight, what Inductor's freezing
                     #   does), then MKL's packed GEMM / oneDNN's linear, as ONNX Runtime prepacks for MLAS
    flags: str = ""  # XLA_FLAGS for jax
    compiled: bool = False  # torch.compile around the sweep
    note: str = ""


YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="
WAYS = {
    "numpy-f32": Way("numpy", "float32", "engine", note="float32 reference: 4 bytes a weight"),
    "jax-f32": Way("jax", "float32", "engine"),
    "jax-bf16": Way("jax", "bfloat16", "engine", note="what the jax adapters run today"),
    "jax-f16": Way("jax", "float16", "engine"),
    "jax-bf16-f32acc": Way("jax", "bfloat16", "f32acc"),
    "jax-f16-f32acc": Way("jax", "float16", "f32acc"),
    "jax-bf16-upcast": Way("jax", "bfloat16", "upcast"),
    "jax-f16-upcast": Way("jax", "float16", "upcast"),
    "jax-bf16-no-ynn": Way("jax", "bfloat16", "engine", YNN_OFF, note="YNNPACK off: Eigen's dot"),
    "jax-f16-no-ynn": Way("jax", "float16", "engine", YNN_OFF),
    "jax-bf16-upcast-no-ynn": Way("jax", "bfloat16", "upcast", YNN_OFF),
    "jax-bf16-onednn": Way("jax", "bfloat16", "engine", "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"),
    "jax-bf16-xnnpack": Way("jax", "bfloat16", "engine", "--xla_cpu_use_xnnpack=true"),
    "jax-bf16-reduce": Way("jax", "bfloat16", "reduce"),
    "jax-f16-reduce": Way("jax", "float16", "reduce"),
    "numpy-f32-nn": Way("numpy", "float32", "nn", note="weights stored [n_in, n_out]"),
    "jax-f32-nn": Way("jax", "float32", "nn"),
    "jax-f32-reduce": Way("jax", "float32", "reduce"),
    "torch-f32": Way("torch", "float32", "engine"),
    "torch-f32-nn": Way("torch", "float32", "nn"),
    "torch-f32-linear": Way("torch", "float32", "linear"),
    "torch-f32-reduce-compiled": Way("torch", "float32", "reduce", compiled=True),
    "torch-f32-mkl-packed": Way("torch", "float32", "mkl-packed"),
    "torch-f32-onednn-packed": Way("torch", "float32", "onednn-packed"),
    "torch-f32-adapter": Way("torch", "float32", "adapter", note="what the torch adapter runs for one float32 row"),
    "torch-bf16": Way("torch", "bfloat16", "engine", note="the engine's product (torch's before 126a798)"),
    "torch-bf16-adapter": Way("torch", "bfloat16", "adapter", note="what the torch adapter runs"),
    "torch-f16": Way("torch", "float16", "engine"),
    "torch-f16-adapter": Way("torch", "float16", "adapter", note="what the torch adapter runs (by torch's oneDNN float16 switch)"),
    "torch-bf16-linear": Way("torch", "bfloat16", "linear"),
    "torch-f16-linear": Way("torch", "float16", "linear"),
    "torch-bf16-upcast-compiled": Way("torch", "bfloat16", "upcast", compiled=True),
    "torch-f16-upcast-compiled": Way("torch", "float16", "upcast", compiled=True),
    "torch-bf16-compiled": Way("torch", "bfloat16", "engine", compiled=True),
    "torch-bf16-reduce-compiled": Way("torch", "bfloat16", "reduce", compiled=True),
    "torch-f16-reduce-compiled": Way("torch", "float16", "reduce", compiled=True),
}


def shapes(scale: str) -> list[tuple[int, int]]:
    """124M's weight matrices as the engine holds them, [n_out, n_in] ('full'), or the first five with an
    eighth of each side ('tiny', for tests)."""
    full = [shape if name == "wte.weight" else shape[::-1]  # HF's Conv1D stores [n_in, n_out]
            for name, shape in matrix_shapes(PRESETS["124M"]).items()]
    return full if scale == "full" else [(max(n // 8, 8), max(k // 8, 8)) for n, k in full[:5]]


def host_matrices(scale: str, dtype: str, seed: int = 0) -> list[np.ndarray]:
    """float32 matrices of the weights' values: rounded to dtype and back."""
    rng = np.random.default_rng(seed)
    out = []
    for n, k in shapes(scale):
        w = rng.standard_normal((n, k), dtype=np.float32) * 0.02
        out.append(round_to(w, dtype))
    return out


def round_to(w: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return w.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":  # round to nearest even on the top 16 bits
        bits = w.view(np.uint32)
        bits = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
        return bits.view(np.float32)
    return w


def sweep_fn(way: Way, weights: list, batch: int):
    """One sweep of way over weights: every product's [batch, n_out] result."""
    if way.library == "numpy":
        if way.product == "nn":
            return lambda xs: [x @ w for w, x in zip(weights, xs)]
        return lambda xs: [(w @ x.T).T for w, x in zip(weights, xs)]
    return jax_sweep(way, weights) if way.library == "jax" else torch_sweep(way, weights, batch)


def jax_sweep(way: Way, weights: list):
    import jax
    import jax.numpy as jnp

    def product(w, x):
        if way.product == "engine":
            return (w @ x.astype(w.dtype).T).T.astype(jnp.float32)
        if way.product == "f32acc":
            return jnp.matmul(w, x.astype(w.dtype).T, preferred_element_type=jnp.float32).T
        if way.product == "reduce":
            return jnp.sum(w.astype(jnp.float32)[:, None, :] * x[None], axis=-1).T
        if way.product == "nn":
            return x @ w
        return (w.astype(jnp.float32) @ x.T).T  # upcast
    jitted = jax.jit(lambda ws, xs: [product(w, x) for w, x in zip(ws, xs)])

    def sweep(xs):
        out = jitted(weights, xs)
        jax.block_until_ready(out)
        return out
    return sweep


def torch_sweep(way: Way, weights: list, batch: int):
    import torch
    if way.product == "adapter":
        declared = get_backend("torch").product
        return lambda xs: [declared(x, w) for w, x in zip(weights, xs)]
    if way.product == "mkl-packed":
        packed = [torch.ops.mkl._mkl_reorder_linear_weight(w, batch) for w in weights]
        return lambda xs: [torch.ops.mkl._mkl_linear(x, p, w, None, batch) for p, w, x in zip(packed, weights, xs)]
    if way.product == "onednn-packed":
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, batch) for w in weights]
        return lambda xs: [torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], "") for p, x in zip(packed, xs)]

    def product(w, x):
        if way.product == "engine":
            return (w @ x.to(w.dtype).T).T.float()
        if way.product == "linear":
            return torch.nn.functional.linear(x.to(w.dtype), w).float()
        if way.product == "f32acc":
            return torch.matmul(w, x.to(w.dtype).T, out_dtype=torch.float32).T
        if way.product == "reduce":
            return torch.sum(w.float()[:, None, :] * x[None], dim=-1).T
        if way.product == "nn":
            return x @ w
        return (w.float() @ x.T).T  # upcast

    def plain(ws, xs):
        return [product(w, x) for w, x in zip(ws, xs)]
    run = torch.compile(plain, dynamic=False) if way.compiled else plain

    def sweep(xs):
        with torch.inference_mode():
            return run(weights, xs)
    return sweep


def to_library(way: Way, arrays: list[np.ndarray], dtype: str):
    if way.library == "numpy":
        return [a.astype(dtype) for a in arrays]
    if way.library == "jax":
        import jax.numpy as jnp
        return [jnp.asarray(a).astype(dtype) for a in arrays]
    import torch
    return [torch.from_numpy(np.ascontiguousarray(a)).to(getattr(torch, dtype)) for a in arrays]


def measure_one(name: str, batch: int, scale: str, sweeps: int) -> dict:
    """Run in the child: time `sweeps` sweeps of way `name` and check one against float64."""
    way = WAYS[name]
    matrices = host_matrices(scale, way.weights)
    rng = np.random.default_rng(1)
    xs_host = [rng.standard_normal((batch, k), dtype=np.float32) for _, k in shapes(scale)]
    weights = to_library(way, [np.ascontiguousarray(m.T) for m in matrices] if way.product == "nn" else matrices,
                         way.weights)
    xs = to_library(way, xs_host, "float32")
    sweep = sweep_fn(way, weights, batch)
    start = time.perf_counter()
    first = sweep(xs)
    first_s = time.perf_counter() - start
    for _ in range(2):
        sweep(xs)
    times = []
    with MachineLoad() as load:  # what else ran meanwhile: a disturbed way is marked, not hidden
        for _ in range(sweeps):
            start = time.perf_counter()
            sweep(xs)
            times.append(time.perf_counter() - start)
    error = 0.0
    for w, x, y in zip(matrices, xs_host, first):
        # the exact product of the half-rounded weights with x (x rounded too where the way rounds it)
        xr = round_to(x, way.weights) if way.product in ("engine", "f32acc", "linear") else x
        exact = xr.astype(np.float64) @ w.astype(np.float64).T
        got = np.asarray(y, dtype=np.float64)  # every way's result is float32 in host memory
        error = max(error, float(np.abs(got - exact).max() / np.abs(exact).max()))
    weight_bytes = sum(n * k for n, k in shapes(scale)) * ITEMSIZE[way.weights]
    median = statistics.median(times)
    return {"way": name, "library": way.library, "weights": way.weights, "product": way.product,
            "flags": way.flags, "compiled": way.compiled, "batch": batch, "scale": scale,
            "weight_bytes": weight_bytes, "median_ms": median * 1e3, "best_ms": min(times) * 1e3,
            "gb_s": weight_bytes / median / 1e9, "first_call_s": first_s, "rel_error": error,
            "threads": len(os.sched_getaffinity(0)), "load": load.record}


def run_child(name: str, batch: int, scale: str, sweeps: int, timeout: float = 600) -> dict:
    way = WAYS[name]
    env = dict(os.environ)
    if way.flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + way.flags).strip()
    cmd = [sys.executable, "-m", "arraygpt.benchmarks.studies.half_products", "--child", name,
           "--batch", str(batch), "--scale", scale, "--sweeps", str(sweeps)]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"way": name, "batch": batch, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"way": name, "batch": batch, "error": last[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def disturbance(row: dict) -> str:
    """'steal 21%' or 'other load 0.4 cores' where the machine took a share of the way's time (the bench's
    validity limits: 10% steal, 0.25 cores), else ''."""
    load = row.get("load", {})
    said = []
    if load.get("steal", 0) > 0.10:
        said.append(f"steal {load['steal']:.0%}")
    if load.get("other_cores", 0) > 0.25:
        said.append(f"other load {load['other_cores']:.2f} cores")
    return "disturbed: " + ", ".join(said) if said else ""


def table(rows: list[dict]) -> str:
    lines = [f"{'way':28} {'B':>2} {'median ms':>10} {'GB/s':>6} {'compile s':>9} {'rel err':>8}  note"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['way']:28} {r['batch']:>2} {'-':>10} {'-':>6} {'-':>9} {'-':>8}  failed: {r['error']}")
            continue
        lines.append(f"{r['way']:28} {r['batch']:>2} {r['median_ms']:10.2f} {r['gb_s']:6.1f} {r['first_call_s']:9.2f} "
                     f"{r['rel_error']:8.1e}  {'; '.join(filter(None, [disturbance(r), WAYS[r['way']].note]))}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arraygpt.benchmarks.studies.half_products", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated ways (default: all): " + ", ".join(WAYS))
    parser.add_argument("--batch", type=batches, default="1,8", help="activation rows, comma-separated (default 1,8)")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full", help="124M's matrices, or tiny ones (tests)")
    parser.add_argument("--sweeps", type=int, default=20, help="timed sweeps per way (default 20)")
    parser.add_argument("--rounds", type=int, default=1, help="run every way this many times, order reversed each round")
    parser.add_argument("--json", help="write the rows here as JSON (a new path, or an earlier study's with --force)")
    parser.add_argument("--force", action="store_true", help="replace the earlier study at --json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_one(args.child, args.batch[0], args.scale, args.sweeps)))
        return 0
    names = [n for n in args.ways.split(",") if n]
    unknown = [n for n in names if n not in WAYS]
    if unknown:
        parser.error(f"unknown way(s) {', '.join(unknown)} (known: {', '.join(WAYS)})")
    if args.json:
        try:  # before any work: never overwrite a file this study did not write
            check_json_output(args.json, KIND, replace=args.force)
        except ArrayGPTError as err:
            parser.error(str(err))
    jobs = [(n, b) for b in args.batch for n in names]
    rows = []
    for round_ in range(args.rounds):
        for i, (name, batch) in enumerate(jobs if round_ % 2 == 0 else jobs[::-1]):
            print(f"[{round_ + 1}/{args.rounds} {i + 1}/{len(jobs)}] {name} b{batch}", file=sys.stderr, flush=True)
            rows.append(run_child(name, batch, args.scale, args.sweeps) | {"round": round_ + 1})
    rows.sort(key=lambda r: (r["batch"], names.index(r["way"]), r["round"]))
    print(table(rows))
    if args.json:
        write_json_atomic(args.json, {"kind": KIND, "study": "half_products", "date": time.strftime("%Y-%m-%d %H:%M"),
                                      "environment": environment(), "rows": rows})
    return 0 if all("error" not in r for r in rows) else 1


def batches(text: str) -> list[int]:
    """'1,8' -> [1, 8]; argparse turns the ValueError into a one-line usage error."""
    values = [int(b) for b in text.split(",") if b]
    if not values or min(values) < 1:
        raise ValueError(text)
    return values


if __name__ == "__main__":
    sys.exit(main())
