"""Synthetic checkpoints of either family: real shapes and Hugging Face layout, random weights.

Drawn the way each is initialized: N(0, 0.02) for embeddings and weights (GPT-2 also scales its residual
projections, attn.c_proj and mlp.c_proj, by 1/sqrt(2 n_layer)), biases 0, norm weights 1 and biases 0.
One seeded host generator draws the tensors in a fixed order, so a seed gives the same file anywhere.
A GPT-2 preset carries GPT-2's vocab.json and merges.txt, a Llama-family preset a tokenizer.json made from
them (engine/hf_tokenizer.py), so text in and out works offline.
"""

from __future__ import annotations

import array
import json
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from .config import GPTConfig, expected_shapes
from .errors import ArrayGPTError
from .families import PRESETS
from .files import read_text
from .hf_tokenizer import write_preset_tokenizer
from .llama.config import LlamaConfig, expected_shapes as llama_shapes
from .runtime import resolve_backend
from .safetensors_io import write_safetensors
from .tokenizer import Tokenizer

INIT_STD = 0.02
SYNTHETIC_MARK = "arraygpt_synthetic"  # config.json key naming the preset and seed of random weights
DIGEST_FILE = "arraygpt-digest.json"   # CRC-32 and stat of each file, written last (engine/presets.py)
CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")  # GPT-2's
LLAMA_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def files_of(config) -> tuple[str, ...]:
    return LLAMA_FILES if isinstance(config, LlamaConfig) else CHECKPOINT_FILES


def _constant(value: float, shape):
    return lambda: array.array("f", [value]) * math.prod(shape)


def llama_tensor_plan(config: LlamaConfig, rng):
    """(HF name, shape, make) for every tensor, in save_pretrained's 'model.' naming."""
    for name, shape in llama_shapes(config).items():
        if name.endswith(".bias"):
            make = _constant(0.0, shape)
        elif name.endswith("norm.weight"):  # RMSNorm weights
            make = _constant(1.0, shape)
        else:
            make = (lambda shape=shape: rng.normal(shape, INIT_STD))
        yield (name if name == "lm_head.weight" else "model." + name), shape, make


def tensor_plan(config: GPTConfig, rng):
    """(HF name, shape, make) for every tensor, in save_pretrained's 'transformer.' naming."""
    if isinstance(config, LlamaConfig):
        yield from llama_tensor_plan(config, rng)
        return
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


def stat_signature(path: Path) -> list[int]:
    """What changes whenever a file's bytes are written through the file system: size, inode and the
    change time (which, unlike the modification time, no user call can set back)."""
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_ctime_ns, st.st_mtime_ns]


def file_digests(directory: Path, names) -> dict[str, int]:
    """CRC-32 of each file (zlib, ~2.4 GB/s here), read in 16 MiB blocks."""
    digests = {}
    for name in names:
        crc = 0
        with open(Path(directory) / name, "rb") as f:
            while block := f.read(16 << 20):
                crc = zlib.crc32(block, crc)
        digests[name] = crc
    return digests


def write_digest(directory: Path, digests: dict[str, int]) -> None:
    directory = Path(directory)
    record = {"crc32": digests, "stat": {name: stat_signature(directory / name) for name in digests}}
    tmp = directory / f".{DIGEST_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, directory / DIGEST_FILE)


def is_arraygpt_checkpoint(directory: Path) -> bool:
    """True for a directory holding only what write_synthetic_checkpoint writes, marked as ours."""
    directory = Path(directory)
    try:
        names = {p.name for p in directory.iterdir()}
        if not names <= set(CHECKPOINT_FILES + LLAMA_FILES) | {DIGEST_FILE} or "config.json" not in names:
            return False
        if any(not (directory / name).is_file() or (directory / name).is_symlink() for name in names):
            return False
        config = json.loads(read_text(directory / "config.json"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get(SYNTHETIC_MARK), dict)


def check_replaceable(directory: Path) -> None:
    """Refuse to replace anything but a directory of arraygpt's own checkpoint files: never the current
    directory or one above it, a home, or a directory holding other files."""
    directory = Path(directory)
    resolved = directory.resolve()
    protected = {Path("/").resolve(), Path.home().resolve()}
    cwd = Path.cwd().resolve()
    if resolved in protected or resolved == cwd or resolved in cwd.parents:
        raise ArrayGPTError(f"{directory}: refusing to replace {resolved} (the current directory, one above it, "
                            "a home or the root); give a new directory for the checkpoint")
    if directory.is_symlink():
        raise ArrayGPTError(f"{directory}: is a symbolic link; give the directory itself")
    if not is_arraygpt_checkpoint(directory):
        others = sorted(p.name for p in directory.iterdir() if p.name not in CHECKPOINT_FILES + LLAMA_FILES + (DIGEST_FILE,))
        what = f"files arraygpt did not write ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" \
            if others else "a checkpoint arraygpt did not write (no synthetic mark in its config.json)"
        raise ArrayGPTError(f"{directory}: holds {what}; refusing to replace it (choose a new or empty directory)")


def write_synthetic_checkpoint(preset: str, directory, seed: int = 0, progress=None, host="numpy",
                               replace: bool = False) -> Path:
    """Write config.json, model.safetensors, the tokenizer's files (files_of) and their digest to directory,
    atomically.

    directory must be new or empty; replace=True also replaces a directory that holds an earlier
    synthetic checkpoint (and nothing else). progress, if given, is called with (tensors written,
    tensors in all).
    """

    if preset not in PRESETS:
        raise ArrayGPTError(f"unknown preset {preset!r} (presets: {', '.join(PRESETS)})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ArrayGPTError(f"seed must be an integer >= 0, got {seed!r}")
    config, directory = PRESETS[preset], Path(directory)
    if str(directory) == "":
        raise ArrayGPTError("no directory given for the checkpoint")
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise ArrayGPTError(f"{directory}: exists and is not a directory")
    occupied = directory.is_dir() and any(directory.iterdir())
    if occupied and not replace:
        raise ArrayGPTError(f"{directory}: not empty")
    if occupied:
        check_replaceable(directory)
    target = directory.resolve()  # '.' and 'a/..' have no name to stage beside
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed at the end: an interrupted run leaves no half checkpoint.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide a checkpoint from its other readers
    old = None
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
        if isinstance(config, LlamaConfig):
            write_preset_tokenizer(staging, config.vocab_size)
        else:
            Tokenizer.gpt2().save_vocab_files(staging)
        write_digest(staging, file_digests(staging, files_of(config)))
        if occupied:  # the old checkpoint steps aside first, and goes only once the new one is in place
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / "checkpoint")
        if target.is_dir():
            # An empty directory (perhaps the current one) keeps its inode: the files move in, the digest
            # last, so a directory without one is never taken for a finished checkpoint.
            for name in files_of(config) + (DIGEST_FILE,):
                os.replace(staging / name, target / name)
            staging.rmdir()
        else:
            staging.replace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old / "checkpoint", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return directory
