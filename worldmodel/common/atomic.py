"""Atomic file writes: write to a temporary file in the same directory, then rename.

A crash or ``kill -9`` at any point leaves either the old file or the new one, never a
half-written file under the final name. A write that runs out of room (a full disk, a quota, the
file size limit) raises :class:`DiskFullError`, one line naming the file and the cause, and
leaves the old file as it was.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_path(d / "hello.txt") as tmp:
...     _ = tmp.write_text("hi")
>>> (d / "hello.txt").read_text()
'hi'
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worldmodel.common.errors import UserError

TEMP_SUFFIX = ".tmp"

NO_ROOM = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit exceeded",
}
"""The errors of a write that ran out of room, in words."""


class DiskFullError(UserError, OSError):
    """A write that ran out of room; the message names the file, the cause and what to do."""


def no_room_cause(exc: BaseException, written: str | os.PathLike | None = None) -> str | None:
    """Why the write of ``written`` that raised ``exc`` ran out of room, in words; None if it did not.

    safetensors reports ``... (os error 28)`` and numpy's short writes ``N requested and M written``
    without an errno; for those, the file size limit and the free space of ``written``'s disk tell.

    >>> no_room_cause(OSError(errno.ENOSPC, "No space left on device")), no_room_cause(FileNotFoundError("x"))
    ('no space left on device', None)
    """
    code = getattr(exc, "errno", None)
    if code is None and (found := re.search(r"os error (\d+)", str(exc))):
        code = int(found.group(1))
    if code in NO_ROOM:
        return NO_ROOM[code]
    if code is not None or not isinstance(exc, OSError) or written is None:
        return None
    written = Path(written)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    with contextlib.suppress(OSError):
        if limit != resource.RLIM_INFINITY and written.is_file() and written.stat().st_size >= limit:
            return NO_ROOM[errno.EFBIG]
        disk = os.statvfs(written if written.is_dir() else written.parent)
        if disk.f_bavail == 0:
            return NO_ROOM[errno.ENOSPC]
    return None


@contextlib.contextmanager
def writing(path: str | os.PathLike, written: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn an error of writing ``path`` (through ``written``, default ``path``) for lack of room into a
    :class:`DiskFullError` naming ``path``; other errors pass unchanged.

    >>> with writing("run/metrics.jsonl"):
    ...     raise OSError(errno.ENOSPC, "No space left on device")
    Traceback (most recent call last):
    ...
    worldmodel.common.atomic.DiskFullError: cannot write run/metrics.jsonl: no space left on device ([Errno 28] \
No space left on device); make room (free disk space, or raise the file size limit: ulimit -f) and run the \
command again (with --resume if a training run asks for it): the files written before are intact
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        cause = no_room_cause(exc, written if written is not None else path)
        if cause is None:
            raise
        detail = " ".join(str(exc).split())
        raise DiskFullError(
            f"cannot write {path}: {cause} ({detail}); make room (free disk space, or raise the file size limit: "
            "ulimit -f) and run the command again (with --resume if a training run asks for it): the files written "
            "before are intact"
        ) from exc


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    Temporary names start with ``.`` and end with ``.tmp`` so readers can ignore them. The file
    gets the mode a plain ``open`` would give it (0644 under the usual umask), whatever wrote it:
    ``mkstemp`` makes 0600 files, and writers such as safetensors replace the temporary file with
    their own. Running out of room raises :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with writing(path, tmp):
            yield tmp
            os.chmod(tmp, 0o666 & ~_current_umask())
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; on success it replaces ``path`` as a whole.

    On an exception the temporary directory is removed and ``path`` is left untouched.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "records"
    >>> with atomic_dir(d) as tmp:
    ...     _ = (tmp / "a.txt").write_text("a")
    >>> sorted(p.name for p in d.iterdir())
    ['a.txt']
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a write that was killed
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
