"""Where a model comes from: a preset (synthetic weights, cached), a local directory or the hub."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from .families import PRESETS
from .errors import CheckpointError, ModelNotFoundError
from .presets import cache_dir, preset_directory
from .synthetic import SYNTHETIC_MARK
from .files import read_text

__all__ = ["ModelSource", "resolve_model", "cache_dir", "synthetic_mark", "download_from_hub"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json",
              "model.safetensors.index.json", "model-*.safetensors"]  # GPT-2 and the Llama family, sharded or not


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


def synthetic_mark(directory: Path) -> dict | None:
    """{"preset", "seed"} of a synthetic checkpoint's config.json; None for real weights. A mark of the
    wrong shape is an error naming the field (config.json itself is checked by GPTConfig)."""
    try:
        raw = json.loads(read_text(Path(directory) / "config.json"))
    except (OSError, ValueError, RecursionError):
        return None
    mark = raw.get(SYNTHETIC_MARK) if isinstance(raw, dict) else None
    if mark is None:
        return None
    if not (isinstance(mark, dict) and isinstance(mark.get("preset"), str) and isinstance(mark.get("seed"), int)
            and not isinstance(mark.get("seed"), bool)):
        raise CheckpointError(f"{Path(directory) / 'config.json'}: {SYNTHETIC_MARK} must be "
                              f'{{"preset": NAME, "seed": INTEGER}}, got {json.dumps(mark)[:80]}')
    return mark


def resolve_model(spec, seed: int = 0, progress=None) -> ModelSource:
    if isinstance(spec, (bytes, bytearray)) or not isinstance(spec, (str, Path)):
        raise ModelNotFoundError(f"a model is a preset name, a directory or a hub id, got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ModelNotFoundError(f"the model seed must be an integer >= 0, got {seed!r}")
    spec = str(spec)
    if not spec.strip():
        raise ModelNotFoundError(f"no model given (presets: {', '.join(PRESETS)}, a directory or a hub id)")
    if spec in PRESETS:
        directory = preset_directory(spec, seed, progress)
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
    how = (f"download config.json, model.safetensors (or its shards and index) and the tokenizer's files (vocab.json "
           f"and merges.txt, or tokenizer.json) of '{repo_id}' where there is "
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
