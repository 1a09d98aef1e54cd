"""Reading a file a user named: only a regular file is read, so a FIFO, a device or a socket given as
config.json, a suite or a bench result is refused at once instead of hanging the command on a read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .errors import CheckpointError


class NotARegularFile(OSError):
    """Raised for a path that is not a regular file; every caller already reports an OSError in one line."""

    def __str__(self):
        return self.strerror


def read_bytes(path) -> bytes:
    """The whole file, opened without blocking (a FIFO with no writer would wait forever) and checked to be a
    regular file before a byte is read."""
    fd = os.open(Path(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(22, "not a regular file (a pipe, device or socket): refusing to read it", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def read_text(path, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def read_config_json(path) -> dict:
    """A checkpoint's config.json as a JSON object; one-line errors naming the file (missing, unreadable, nested
    past the parser's depth, not an object)."""
    try:
        raw = json.loads(read_text(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (a checkpoint needs config.json)") from None
    except (OSError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{path}: not readable JSON ({str(err)[:100]})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return raw
