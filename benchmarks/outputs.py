"""Where a command may write its results: checked before any work starts, locked while a bench writes.

The rules (the README's "Files are safe"): an output path is new, or an existing regular file that the
command itself wrote before (a result of the same kind, or an image of the format its name says); a
bench result is replaced only when asked (--force). A symbolic link, a directory, a device or any other
file is never written through or replaced. A bench holds an exclusive lock on its --json path for the
whole run, so two benches cannot lose each other's rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path

from engine.errors import ArrayGPTError

# What an image of each format starts with (matplotlib writes these formats).
IMAGE_MAGIC = {".png": (b"\x89PNG",), ".pdf": (b"%PDF",), ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",),
               ".svg": (b"<?xml", b"<svg")}


def _kind_of(path: Path) -> str | None:
    """The 'kind' of an arraygpt JSON file, '' for an empty file, None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(64 << 20)
    except OSError:
        return None
    if not head.strip():
        return ""
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError):
        return None
    return doc.get("kind") if isinstance(doc, dict) and isinstance(doc.get("kind"), str) else None


def _is_image(path: Path, suffix: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return not head or any(head.lstrip().startswith(magic) for magic in IMAGE_MAGIC[suffix])


def _check_writable_parent(path: Path, option: str) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise ArrayGPTError(f"{option} {path}: {parent} is not a directory") from None
    except OSError as err:
        raise ArrayGPTError(f"{option} {path}: cannot write in {parent} ({err.strerror or err})") from None


def _existing(path: Path, option: str) -> os.stat_result | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise ArrayGPTError(f"{option} {path}: a part of the path is not a directory") from None
    except OSError as err:
        raise ArrayGPTError(f"{option} {path}: cannot be checked ({err.strerror or err})") from None
    if stat.S_ISLNK(st.st_mode):
        raise ArrayGPTError(f"{option} {path}: is a symbolic link; give the path of a new file or of the file itself")
    if stat.S_ISDIR(st.st_mode):
        raise ArrayGPTError(f"{option} {path}: is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise ArrayGPTError(f"{option} {path}: is not a regular file (a device, pipe or socket); refusing to "
                            "write to it")
    return st


def check_json_output(path, kind: str, *, replace: bool = False, option: str = "--json",
                      force_hint: str = "--force") -> Path:
    """A path a command may write its `kind` JSON result to ('arraygpt-bench', ...), or a one-line error.

    replace: an existing result of the same kind may be replaced (bench: only with --force; the verdicts
    of compare and parity always, they are made again from their inputs in seconds)."""
    if path is None or str(path) == "":
        raise ArrayGPTError(f"{option}: no path given")
    path = Path(path)
    if _existing(path, option) is not None:
        found = _kind_of(path)
        if found is None or (found and found != kind):
            what = f"an {found} file" if found else "a file arraygpt did not write"
            raise ArrayGPTError(f"{option} {path}: exists and is {what}; refusing to overwrite it (choose a new path)")
        if found == kind and not replace:
            raise ArrayGPTError(f"{option} {path}: holds an earlier {kind} result; pass {force_hint} to replace it, "
                                "or choose a new path")
    _check_writable_parent(path, option)
    return path


def check_image_output(path, option: str = "-o") -> Path:
    """An image path (png, svg, pdf, jpg): a name without a suffix gets .png. An existing file is replaced
    only if it is an image of that format."""
    if path is None or str(path) == "":
        raise ArrayGPTError(f"{option}: no path given")
    path = Path(path)
    if path.suffix == "":
        path = path.with_name(path.name + ".png")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_MAGIC:
        raise ArrayGPTError(f"{option} {path}: unknown image format '{path.suffix}' (use "
                            f"{', '.join(sorted(IMAGE_MAGIC))})")
    if _existing(path, option) is not None and not _is_image(path, suffix):
        raise ArrayGPTError(f"{option} {path}: exists and is not a {suffix[1:].upper()} image; refusing to "
                            "overwrite it (choose a new path)")
    _check_writable_parent(path, option)
    return path


@contextlib.contextmanager
def exclusive_output(path: Path, option: str = "--json"):
    """Hold an exclusive lock on an output path for a block of work; a second holder is refused at once.

    The lock is a hidden file beside the output (kept while held, removed after)."""
    import fcntl
    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    while True:
        try:
            handle = open(lock_path, "a+")
        except OSError as err:
            raise ArrayGPTError(f"{option} {path}: cannot lock it ({err.strerror or err})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            raise ArrayGPTError(f"{option} {path}: another arraygpt bench is writing it"
                                f"{f' (pid {owner})' if owner else ''}; wait for it to end or choose another "
                                "path") from None
        # The file may have been removed by its previous holder between open and lock: lock the one there now.
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        handle.close()
