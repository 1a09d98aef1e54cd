"""Result files: written atomically (a temp file renamed over the target), so a crash never leaves half a file.

A bench that rewrites its result after each scenario must never replace a file someone else put at that path
meanwhile. Checking the path and then renaming over it leaves a window between the two in which a user's file
can appear and be lost (make test saw it on a busy machine). write_json_atomic(..., expect=identity) closes it:
where nothing was, the file is linked into place (os.link fails if anything appeared); where our earlier file
was, the new one is exchanged with it in one step (Linux renameat2 RENAME_EXCHANGE) and the file taken out is
checked to be ours; if it is not, the exchange is undone and nothing of the user's was ever gone. Where
renameat2 is missing (another OS, an old kernel), the check and the rename are as close together as they can be.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import tempfile
from pathlib import Path

from .outputs import identity

ANY = object()  # write_json_atomic's default expect: replace whatever is there
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP if hasattr(errno, "ENOTSUP") else errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code), b)


def _put(tmp: str, path: Path, expect) -> bool:
    """tmp into path's place if what is there is `expect` (an identity; None: nothing); False, with path
    untouched, if something else is there."""
    if expect is ANY:
        os.replace(tmp, path)
        return True
    if expect is None:
        try:
            os.link(tmp, path)  # fails with EEXIST if anything appeared: never replaces
        except FileExistsError:
            return False
        os.unlink(tmp)
        return True
    if identity(path) != expect:
        return False
    if not _exchange(tmp, str(path)):
        os.replace(tmp, path)  # no atomic exchange here: checked just above
        return True
    if identity(tmp) != expect:  # what came out is not ours: put it back
        _exchange(tmp, str(path))
        return False
    os.unlink(tmp)
    return True


def write_json_atomic(path, data, expect=ANY) -> Path | None:
    """Write data as JSON to path atomically; the path, or None (nothing written) when expect is given and what
    is at path is not it (expect: the identity of the file there before, or None for nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result file is for everyone to read
        if not _put(tmp, path, expect):
            Path(tmp).unlink(missing_ok=True)
            return None
    except OSError as err:  # a write that failed (no space, a file size limit) names the file it was for
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
