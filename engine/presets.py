"""The preset cache: synthetic checkpoints made once, shared by concurrent processes, verified on use.

A preset lives in $ARRAYGPT_CACHE/synthetic/NAME-seedS/. Making one takes an exclusive lock, so
several processes asking for the same preset at once make it once and all see it whole. The
checkpoint records a CRC-32 of each file (engine.synthetic.DIGEST_FILE) and the files' stat when it
was made; a use whose stat still matches costs one stat per file, any other re-reads the files
(~0.2 s per 124M) and compares the digest. A damaged preset (bytes overwritten: zeros pass the NaN
check) is rebuilt from its seed, with a warning; it is deterministic, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import warnings
from pathlib import Path

from .errors import CheckpointError
from .synthetic import DIGEST_FILE, file_digests, stat_signature, write_digest, write_synthetic_checkpoint


class PresetRepaired(UserWarning):
    """A cached preset failed its digest and was rebuilt."""


def cache_dir() -> Path:
    """ARRAYGPT_CACHE, else $XDG_CACHE_HOME/arraygpt, else ~/.cache/arraygpt."""
    if os.environ.get("ARRAYGPT_CACHE"):
        return Path(os.environ["ARRAYGPT_CACHE"]).expanduser()
    home = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(home) / "arraygpt"


def _cache_error(path: Path, err: OSError) -> CheckpointError:
    return CheckpointError(f"cannot use the preset cache at {path} ({err.strerror or err}); set ARRAYGPT_CACHE "
                           "to a writable directory")


@contextlib.contextmanager
def _locked(lock_path: Path):
    """An exclusive lock held by this process (released when the block ends or the process dies)."""
    import fcntl
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def verify(directory: Path) -> str | None:
    """None if the checkpoint matches its digest, else what is wrong. Cheap when nothing changed."""
    try:
        recorded = json.loads((directory / DIGEST_FILE).read_text())
        files, stats = recorded["crc32"], recorded["stat"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{DIGEST_FILE} is missing or unreadable"
    try:
        if all(stat_signature(directory / name) == stats.get(name) for name in files):
            return None
        actual = file_digests(directory, files)
    except OSError as err:
        return f"a file cannot be read ({err.strerror or err})"
    bad = [name for name in files if actual[name] != files[name]]
    if bad:
        return f"{bad[0]} does not match its digest (its bytes changed after it was written)"
    # Same bytes, new stat (copied, touched): remember the new stat so the next use is cheap again.
    with contextlib.suppress(OSError):
        write_digest(directory, files)
    return None


def preset_directory(preset: str, seed: int = 0, progress=None) -> Path:
    """The cached checkpoint of a preset, made (or remade, if damaged) under a lock if needed."""
    root = cache_dir() / "synthetic"
    directory = root / f"{preset}-seed{seed}"
    if (directory / "model.safetensors").exists() and verify(directory) is None:
        return directory
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f".{directory.name}.lock"):
            # Another process may have made it while this one waited for the lock.
            if (directory / "model.safetensors").exists():
                problem = verify(directory)
                if problem is None:
                    return directory
                warnings.warn(PresetRepaired(f"the cached preset {directory} was damaged ({problem}); "
                                             "rebuilding it from its seed"), stacklevel=2)
            write_synthetic_checkpoint(preset, directory, seed=seed, progress=progress, replace=True)
    except OSError as err:
        problem = verify(directory) if directory.exists() else None
        if problem is not None:
            raise CheckpointError(f"the cached preset {directory} is damaged ({problem}) and cannot be "
                                  f"rebuilt there ({err.strerror or err}); delete it, or set ARRAYGPT_CACHE to a "
                                  "writable directory") from None
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(f"no space left to write the {preset} preset under {root} "
                                  f"({err.strerror}); free some space or set ARRAYGPT_CACHE elsewhere") from None
        raise _cache_error(root, err) from None
    return directory
