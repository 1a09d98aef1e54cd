"""arraygpt init PRESET DIR: write a synthetic checkpoint in the Hugging Face GPT-2 layout."""

from __future__ import annotations

from pathlib import Path

from arraygpt.engine.families import PRESETS
from arraygpt.engine.errors import ArrayGPTError

from .options import naming_the_path, progress_bar, seed, stderr


def add_parser(sub):
    p = sub.add_parser("init", help="write a synthetic (random-weight) checkpoint",
                       description="Write config.json, model.safetensors and the tokenizer's files (GPT-2: "
                                   "vocab.json and merges.txt; the Llama family: tokenizer.json) for a preset, at "
                                   "its real shapes, with weights drawn as the model initializes them "
                                   "(deterministic for a seed). Hugging Face transformers loads the result.")
    p.add_argument("preset", metavar="PRESET", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("directory", metavar="DIR", help="where to write it")
    p.add_argument("--model-seed", "--seed", dest="seed", type=seed, default=0, metavar="S",
                   help="the weights' random seed, as --model-seed everywhere else (default: 0; --seed is the old name)")
    p.add_argument("--force", action="store_true",
                   help="replace DIR if it holds an earlier arraygpt checkpoint and nothing else (never the "
                        "current directory, one above it, a home, or a directory with other files)")


def run(args) -> int:
    from arraygpt.engine.synthetic import write_synthetic_checkpoint

    directory = Path(args.directory)
    if args.preset not in PRESETS:
        raise ArrayGPTError(f"unknown preset '{args.preset}' (presets: {', '.join(PRESETS)})")
    if directory.is_dir() and any(directory.iterdir()) and not args.force:
        raise ArrayGPTError(f"{directory}: not empty (--force replaces an earlier arraygpt checkpoint, and only that)")
    with progress_bar(f"writing {args.preset}") as update, naming_the_path(directory):
        write_synthetic_checkpoint(args.preset, directory, seed=args.seed, progress=update, replace=args.force)
    config = PRESETS[args.preset]
    stderr.print(f"wrote synthetic {args.preset} ({config.n_params:,} parameters, random weights, seed {args.seed}) "
                 f"to {directory}")
    return 0
