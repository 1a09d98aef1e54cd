"""Synthetic GPT-2 checkpoints: real shapes and Hugging Face layout, random weights.

Drawn the way GPT-2 is initialized: N(0, 0.02) for embeddings and weights, residual projections
(attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2 n_layer), biases 0, LayerNorm weight 1 and bias 0.
One seeded host generator draws the tensors in a fixed order, so a seed gives the same file anywhere.
"""

from __future__ import annotations

import array
import json
import math
import shutil
import tempfile
from pathlib import Path

from .checkpoint import write_safetensors
from .config import PRESETS, GPTConfig, expected_shapes
from .errors import ArrayGPTError
from .runtime import resolve_backend
from .source import SYNTHETIC_MARK

INIT_STD = 0.02


def _constant(value: float, shape):
    return lambda: array.array("f", [value]) * math.prod(shape)


def tensor_plan(config: GPTConfig, rng):
    """(HF name, shape, make) for every tensor, in save_pretrained's 'transformer.' naming."""
    residual_std = INIT_STD / math.sqrt(2 * config.n_layer)
    for name, shape in expected_shapes(config).items():
        if name.endswith(".bias"):
            make = _constant(0.0, shape)
        elif name.startswith("ln_") or ".ln_" in name:  # LayerNorm weights
            make = _constant(1.0, shape)
        else:
            std = residual_std if name.endswith("c_proj.weight") else INIT_STD
            make = (lambda shape=shape, std=std: rng.normal(shape, std))
        yield "transformer." + name, shape, make


def write_synthetic_checkpoint(preset: str, directory, seed: int = 0, progress=None, host="numpy") -> Path:
    """Write config.json, model.safetensors, vocab.json and merges.txt to directory, atomically.

    progress, if given, is called with (tensors written, tensors in all).
    """
    from .tokenizer import Tokenizer

    if preset not in PRESETS:
        raise ArrayGPTError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArrayGPTError(f"seed must be an integer >= 0, got {seed!r}")
    config, directory = PRESETS[preset], Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed at the end: an interrupted run leaves no half checkpoint.
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        plan = list(tensor_plan(config, resolve_backend(host).random(seed)))
        done = 0

        def written(_name):
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, len(plan))

        write_safetensors(staging / "model.safetensors", plan, on_tensor=written)
        hf_config = config.to_hf_json() | {SYNTHETIC_MARK: {"preset": preset, "seed": seed}}
        (staging / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        Tokenizer.gpt2().save_vocab_files(staging)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory
