"""What a backend's declared primitives (engine.layers.Primitives: LayerNorm, GELU, softmax as one library kernel
each) change in its decode speed, against the engine's own functions on the same backend, in one process.

    python -m arraygpt.benchmarks.studies.declared_primitives --backend torch --json out.json

Two models share the checkpoint: one with the backend's primitives, one with them set back to the engine's.
They generate the same tokens (checked) and are timed alternately (ABBA...), so drift of a shared machine
falls on both; tokens/s per repeat, medians, and torch's operators per step where torch is the backend.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from arraygpt.backends import get_backend
from arraygpt.engine import load_model
from arraygpt.engine.errors import ArrayGPTError

from ..gpu.step_profile import torch_launches
from ..jsonio import write_json_atomic
from ..measure.environment import environment
from ..measure.timing import fixed_prompts
from ..outputs import check_json_output

NAMES = ("layer_norm", "gelu", "softmax")
KIND = "arraygpt-study"


def models(spec: str, backend: str, device: str | None):
    declared = get_backend(backend, device=device)
    plain = get_backend(backend, device=device)
    for name in NAMES:
        setattr(plain, name, None)  # this instance only: the engine's functions
    return load_model(spec, backend=declared), load_model(spec, backend=plain)


def operators_per_step(model, prompts, steps: int) -> float | None:
    if not model.backend.name.startswith("torch"):
        return None
    return torch_launches(model, prompts, steps)[0]


def measure(spec, backend, device, batch, new_tokens, repeats) -> dict:
    declared, plain = models(spec, backend, device)
    prompts = fixed_prompts(batch, 16, declared.config.vocab_size)
    same = ([list(row) for row in declared.generate(prompts, max_new_tokens=new_tokens)]
            == [list(row) for row in plain.generate(prompts, max_new_tokens=new_tokens)])
    tps = {"declared": [], "engine": []}
    for i in range(repeats):
        order = (("declared", declared), ("engine", plain)) if i % 2 == 0 else (("engine", plain), ("declared", declared))
        for name, model in order:
            start = time.perf_counter()
            model.generate(prompts, max_new_tokens=new_tokens)
            model.backend.synchronize()
            tps[name].append(batch * new_tokens / (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in tps.items()}
    return {"batch": batch, "new_tokens": new_tokens, "same_tokens": bool(same), "tokens_per_s": tps,
            "median": medians, "declared_over_engine": medians["declared"] / medians["engine"],
            "operators_per_step": {"declared": operators_per_step(declared, prompts, 8),
                                   "engine": operators_per_step(plain, prompts, 8)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="124M")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--json", default=None, help="write the rows here (a new path, or an earlier study's with --force)")
    parser.add_argument("--force", action="store_true", help="replace the earlier study at --json")
    args = parser.parse_args(argv)
    if args.json:
        try:  # before any work: never overwrite a file this study did not write
            check_json_output(args.json, KIND, replace=args.force)
        except ArrayGPTError as err:
            parser.error(str(err))
    rows = []
    for batch in map(int, args.batch_sizes.split(",")):
        row = measure(args.model, args.backend, args.device, batch, args.new_tokens, args.repeats)
        rows.append(row)
        ops = row["operators_per_step"]
        print(f"{args.backend} b{batch}: declared {row['median']['declared']:.1f} tok/s, engine's "
              f"{row['median']['engine']:.1f} ({row['declared_over_engine']:.2f}x); tokens equal: {row['same_tokens']}"
              + (f"; operators/step {ops['declared']:.0f} vs {ops['engine']:.0f}" if ops["declared"] else ""), flush=True)
    if args.json:
        write_json_atomic(args.json, {"kind": KIND, "study": "declared_primitives", "model": args.model, "backend": args.backend,
                                      "python": platform.python_version(), "environment": environment(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
