"""Episode claims: several collectors share one dataset directory without collecting an episode twice.

Each collector holds an exclusive ``flock`` on its own token file in ``DATA_DIR/.claims/`` for as
long as it runs. Before running episode ``i`` it claims it by creating ``episode-<i>`` (``O_EXCL``)
naming its token, then checks that the dataset does not hold the episode yet; it releases the claim
once the episode is durably written (or, unfinished, when it exits). A claim another live collector
holds is skipped; a claim whose collector died (its token is no longer locked: ``kill -9`` releases
every ``flock``) is taken over, so nothing is lost. The dataset stays the one record of what is done:
claims only say who is working on what now.

>>> import tempfile
>>> out = tempfile.mkdtemp()
>>> with EpisodeClaims(out) as a, EpisodeClaims(out) as b:
...     first = a.claim(0), b.claim(0), b.claim(1)
...     a.release(0)
...     first, b.claim(0)
((True, False, True), True)
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path
from types import TracebackType

CLAIMS_DIR = ".claims"


class EpisodeClaims:
    """This collector's claims on the episodes of one dataset directory (a context manager)."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.dir = Path(data_dir) / CLAIMS_DIR
        self.token = f"collector-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock: int | None = None
        self._held: set[int] = set()

    def __enter__(self) -> EpisodeClaims:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.dir / f"{self.token}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for index in list(self._held):  # unfinished: free for the next collector
            self._path(index).unlink(missing_ok=True)
        self._held.clear()
        if self._lock is not None:
            (self.dir / f"{self.token}.lock").unlink(missing_ok=True)
            os.close(self._lock)  # releases the flock
            self._lock = None

    def others_running(self) -> bool:
        """Whether another collector is writing into this dataset now."""
        return any(lock.name != f"{self.token}.lock" and _alive(lock) for lock in self.dir.glob("collector-*.lock"))

    def _path(self, index: int) -> Path:
        return self.dir / f"episode-{index}"

    def claim(self, index: int) -> bool:
        """Claim episode ``index``: True when this collector holds it (now or already), False when another does."""
        path = self._path(index)
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read(path)
                if owner is None:  # removed meanwhile: try again
                    continue
                if owner == self.token or _alive(self.dir / f"{owner}.lock"):
                    return owner == self.token
                # its collector died: take the claim over (the rename is atomic; the last one wins, so check)
                tmp = path.with_name(f"{path.name}.{self.token}")
                tmp.write_text(self.token)
                os.replace(tmp, path)
                if _read(path) != self.token:
                    return False
                self._held.add(index)
                return True
            with os.fdopen(fd, "w") as f:
                f.write(self.token)
            self._held.add(index)
            return True

    def release(self, index: int) -> None:
        """Give up the claim on episode ``index`` (written, or found in the dataset already)."""
        if index in self._held:
            self._path(index).unlink(missing_ok=True)
            self._held.discard(index)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _alive(lock_path: Path) -> bool:
    """Whether a collector holds the token file ``lock_path`` locked (is still running)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
