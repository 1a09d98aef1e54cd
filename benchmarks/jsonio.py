"""Result files: written atomically (a temp file renamed over the target), so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_json_atomic(path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result file is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_bench_file(doc, path) -> None:
    """A one-line error unless doc is what `arraygpt bench --json` writes (report and compare)."""
    if not isinstance(doc, dict) or doc.get("kind") != "arraygpt-bench":
        from engine.errors import ArrayGPTError
        raise ArrayGPTError(f"{path}: not an arraygpt bench result (no \"kind\": \"arraygpt-bench\"); "
                            "give files written by `arraygpt bench --json`")


def read_json(path) -> dict:
    from engine.errors import ArrayGPTError
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ArrayGPTError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ArrayGPTError(f"{path}: not a readable JSON result file ({err})") from None
