"""Where a command may write its results: checked before any work starts, locked while a bench writes.

The rules (docs/guarantees.md, "Files"): an output path is new, or an existing regular file that the
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
import time
from pathlib import Path

from arraygpt.engine.errors import ArrayGPTError

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
        _existing(path, option)  # a device or directory named without a suffix (-o /dev/null) is refused as given
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


def identity(path) -> tuple | None:
    """What tells a file from another put in its place: device, inode, size and modification time (None:
    nothing at that path)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def free_path(path: Path) -> Path:
    """path, or the first of NAME-2.json, NAME-3.json, ... that does not exist."""
    candidate, n = path, 2
    while os.path.lexists(candidate):
        candidate, n = path.with_name(f"{path.stem}-{n}{path.suffix}"), n + 1
    return candidate


_LOCK_MAX_BYTES = 32  # a lock of ours holds a pid and nothing else


def _remove_if_stale(lock_path: Path, path: Path, option: str) -> None:
    """A file already at the lock's name: a lock a killed bench left (a pid, held by nobody) is removed; one
    that a running bench holds, or anything that is not a lock of ours (a link, a user's file), is refused
    in one line and never touched."""
    import fcntl
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # its holder removed it meanwhile: try again
    except OSError as err:
        raise ArrayGPTError(f"{option} {path}: {lock_path} is in the way of the lock (it is "
                            f"{'a symbolic link' if os.path.islink(lock_path) else err.strerror}), not a lock of "
                            "arraygpt's; remove or rename it, or choose another path") from None
    try:
        st = os.fstat(fd)
        content = os.read(fd, _LOCK_MAX_BYTES + 1).strip()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _LOCK_MAX_BYTES or (content and not content.isdigit()):
            raise ArrayGPTError(f"{option} {path}: {lock_path} is in the way of the lock and is not a lock of "
                                "arraygpt's; remove or rename it, or choose another path")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = content.decode()
            raise ArrayGPTError(f"{option} {path}: another arraygpt bench is writing it"
                                f"{f' (pid {owner})' if owner else ''}; wait for it to end or choose another "
                                "path") from None
        if not content:  # a bench that has just created it and not yet written its pid, or someone's empty file
            time.sleep(0.1)
            if not os.pread(fd, 1, 0):
                raise ArrayGPTError(f"{option} {path}: {lock_path} is in the way of the lock and is an empty file, "
                                    "not a lock of arraygpt's; remove or rename it, or choose another path")
            return  # it has a pid now: look again
        with contextlib.suppress(OSError):  # nobody holds it: left by a bench that was killed
            if os.lstat(lock_path).st_ino == st.st_ino:
                os.unlink(lock_path)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_output(path: Path, option: str = "--json"):
    """Hold an exclusive lock on an output path for a block of work; a second holder is refused at once.

    The lock is a hidden file beside the output, `.NAME.lock`, that the bench creates itself (exclusively,
    never through a link) and removes after; a file already at that name is taken over only when it is a
    lock that a killed bench left, and anything else there is refused, never written or removed."""
    import fcntl
    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    for _ in range(50):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            break
        except FileExistsError:
            _remove_if_stale(lock_path, path, option)
        except OSError as err:
            raise ArrayGPTError(f"{option} {path}: cannot lock it ({err.strerror or err})") from None
    else:
        raise ArrayGPTError(f"{option} {path}: cannot lock it ({lock_path} keeps coming back); choose another path")
    mine = os.fstat(fd).st_ino
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            if os.lstat(lock_path).st_ino == mine:
                os.unlink(lock_path)
        os.close(fd)
