"""Time per decode step and work launched per step, per backend: `python -m arraygpt.benchmarks.gpu.step_profile`.

For each backend the model decodes `--steps` tokens after a warm-up (which compiles or records), the
device synchronized around the clock. Work launched per step, where torch is installed: on a GPU the CUDA
kernels that torch's profiler (CUPTI, which sees every library's kernels in the process, those a replayed
graph launches included) records per step, for every backend; on a CPU torch's operators, for torch only.
One line each; the JSON also keeps the most frequent kernel names with their launches per step.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from arraygpt.backends import BackendError, get_backend
from arraygpt.engine import load_model

from ..measure.timing import fixed_prompts

TOP_KERNELS = 25  # kernel names kept per backend: where the launches of a step come from


def step_time(model, prompts, steps: int) -> float:
    # warm-up at the timed length: a shorter one leaves a loop length (jax-loop) or a shape bucket to compile or
    # record inside the clock (the first H200 profiles timed jax-loop's compile: 62-68 ms "per step")
    model.generate(prompts, max_new_tokens=steps + 1)
    model.backend.synchronize()
    start = time.perf_counter()
    model.generate(prompts, max_new_tokens=steps + 1)
    model.backend.synchronize()
    return (time.perf_counter() - start) / steps


def torch_launches(model, prompts, steps: int) -> tuple[float, dict[str, float]] | None:
    """Launches per step, and per step for each kernel (or operator) name, the most frequent first."""
    on_gpu = model.backend.device_key() != "cpu"
    if not on_gpu and not model.backend.name.startswith("torch"):
        return None  # on a CPU the profiler sees torch's own operators only
    try:
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    activity = ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        model.generate(prompts, max_new_tokens=steps + 1)
    events = [e for e in prof.events() if (e.device_type.name == "CUDA") == on_gpu]
    names = Counter(e.name[:80] for e in events)
    return len(events) / steps, {name: count / steps for name, count in names.most_common(TOP_KERNELS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="124M")
    parser.add_argument("--backends", default="jax:gpu,jax-loop:gpu,torch:gpu,torch-eager:gpu,cupy,cupy-eager")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for item in args.backends.split(","):
        name, _, device = item.partition(":")
        row = {"backend": item, "dtype": args.dtype, "batch": args.batch}
        try:
            model = load_model(args.model, backend=get_backend(name, device=device or None), dtype=args.dtype)
            prompts = fixed_prompts(args.batch, 16, model.config.vocab_size)
            row["ms_per_step"] = step_time(model, prompts, args.steps) * 1e3
            counted = torch_launches(model, prompts, args.steps)
            if counted is not None:
                row["launches_per_step"], row["kernels_per_step"] = counted
        except (BackendError, Exception) as err:  # a part of the check must not end the others
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
        rows.append(row)
        launches = row.get("launches_per_step")
        print(f"{item:14s} {args.dtype:9s} b{args.batch}: " + (row["error"] if "error" in row else
              f"{row['ms_per_step']:.3f} ms/step" + (f", {launches:.0f} launches/step" if launches else "")),
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
