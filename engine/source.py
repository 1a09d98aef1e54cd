"""Where a model comes from: a preset (synthetic weights, cached), a local directory or the hub."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from .config import PRESETS
from .errors import ModelNotFoundError

SYNTHETIC_MARK = "arraygpt_synthetic"  # config.json key naming the preset and seed of random weights
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]


@dataclasses.dataclass(frozen=True)
class ModelSource:
    spec: str
    directory: Path
    synthetic: dict | None  # {"preset": ..., "seed": ...} when the weights are random

    def describe(self) -> str:
        if self.synthetic:
            return (f"synthetic {self.synthetic['preset']} (random weights, seed {self.synthetic['seed']}) "
                    f"at {self.directory}")
        return str(self.directory)


def cache_dir() -> Path:
    """ARRAYGPT_CACHE, else $XDG_CACHE_HOME/arraygpt, else ~/.cache/arraygpt."""
    if os.environ.get("ARRAYGPT_CACHE"):
        return Path(os.environ["ARRAYGPT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arraygpt"


def synthetic_mark(directory: Path) -> dict | None:
    try:
        return json.loads((Path(directory) / "config.json").read_text()).get(SYNTHETIC_MARK)
    except (OSError, ValueError):
        return None


def resolve_model(spec, seed: int = 0, progress=None) -> ModelSource:
    spec = str(spec)
    if spec in PRESETS:
        from .synthetic import write_synthetic_checkpoint
        directory = cache_dir() / "synthetic" / f"{spec}-seed{seed}"
        if not (directory / "model.safetensors").exists():
            write_synthetic_checkpoint(spec, directory, seed=seed, progress=progress)
        return ModelSource(spec, directory, synthetic_mark(directory))
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelSource(spec, path, synthetic_mark(path))
    if path.exists():
        raise ModelNotFoundError(f"{spec}: not a directory (give the checkpoint's directory, "
                                 "holding config.json and model.safetensors)")
    if re.fullmatch(r"\d+(\.\d+)?[MmBb]", spec):
        raise ModelNotFoundError(f"unknown preset '{spec}' (presets: {', '.join(PRESETS)})")
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        raise ModelNotFoundError(f"{spec}: no such directory (presets: {', '.join(PRESETS)})")
    return ModelSource(spec, download_from_hub(spec), None)


def download_from_hub(repo_id: str) -> Path:
    how = (f"download config.json, model.safetensors, vocab.json and merges.txt of '{repo_id}' where there is "
           f"network and pass --model DIR, or use a preset ({', '.join(PRESETS)}) for random weights")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelNotFoundError(f"'{repo_id}' is not a preset or a local directory, and the hub client is "
                                 f"not installed (pip install 'arraygpt[hub]'); or {how}") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except Exception as err:  # network, auth and not-found errors all end the same way for the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelNotFoundError(f"'{repo_id}' is not a preset or a local directory, and the hub download "
                                 f"failed ({type(err).__name__}: {reason[:200]}); {how}") from None
