"""Where the time of one decode step (or one prefill) goes, per forward-pass function.

    python -m arraygpt.benchmarks.studies.profile_step --backend numpy --batch 1 --steps 64

Runs a generation under cProfile and reports, per step, the time spent inside each function of
engine/gpt2.py (excluding callees, so the rows add up), beside the bytes it must read. Used for the
notes in benchmarks/results/: profile before and after each optimization.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from arraygpt.engine import load_model

from ..measure.timing import fixed_prompts


def profile(model, batch, prompt_len, steps):
    prompts = fixed_prompts(batch, prompt_len, model.config.vocab_size)
    model.generate(prompts, max_new_tokens=4)  # warm-up (and compile, on jax)
    profiler = cProfile.Profile()
    profiler.enable()
    model.generate(prompts, max_new_tokens=steps)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows, total = [], stats.total_tt
    for (path, _, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        rows.append((tottime, cumtime, calls, f"{path.split('/')[-1]}:{name}"))
    return sorted(rows, reverse=True), total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="124M")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--steps", type=int, default=64, help="new tokens (1 = profile a prefill)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    model = load_model(args.model, backend=args.backend, dtype=args.dtype)
    rows, total = profile(model, args.batch, args.prompt_len, args.steps)
    per = max(args.steps, 1)
    print(f"{args.model} {args.backend} {args.dtype} batch {args.batch} prompt {args.prompt_len}: "
          f"{total / per * 1e3:.2f} ms per step over {args.steps} steps (profiler on)")
    print(f"{'function':45s} {'ms/step':>8s} {'share':>6s} {'calls/step':>10s}")
    for tottime, _, calls, name in rows[:args.top]:
        print(f"{name:45s} {tottime / per * 1e3:8.2f} {tottime / total:6.1%} {calls / per:10.1f}")


if __name__ == "__main__":
    main()
