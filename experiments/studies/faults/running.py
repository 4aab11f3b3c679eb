r"""Running ``worldmodel ARGV`` for the fault campaign: in a process of its own (killed at a moment, or with its
files limited in size, as a full disk would), or in this process; what a run did (:class:`Outcome`).

>>> stderr = "epoch 1: ...\nworldmodel train-vae: error: run/x.json is corrupt\n"
>>> outcome = Outcome(("train-vae",), 2, "", stderr, wall_s=1.0)
>>> outcome.one_line_error, outcome.names("other/run/x.json")
(True, True)
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 600.0
"""The longest any one run of a command may take."""


@dataclass(frozen=True)
class Outcome:
    """One run of ``worldmodel ARGV``: exit status, output and wall time; ``killed_at_s`` when it was sent SIGKILL."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    killed_at_s: float | None = None
    started_s: float | None = None
    """When the watched path (the command's first file) appeared, in seconds since the start."""
    began: float = 0.0
    """When it started, as ``time.time()`` (to compare with the times files were written)."""

    @property
    def error_lines(self) -> list[str]:
        """The ``worldmodel COMMAND: error: ...`` lines of stderr (:func:`worldmodel.cli.main` prints one per error)."""
        return [line for line in self.stderr.splitlines() if re.match(r"worldmodel [\w-]+: error: ", line)]

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    @property
    def one_line_error(self) -> bool:
        """Exit 2, one error line, the last line of stderr, and no traceback (earlier lines are progress messages)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = self.error_lines
        return self.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0] and not self.traceback

    def names(self, path: str | Path) -> bool:
        """Whether the error line (or, after exit 0, any line of output) names the file ``path``."""
        text = "\n".join(self.error_lines) if self.returncode else self.stdout + self.stderr
        return Path(path).name in text

    def to_record(self) -> dict[str, Any]:
        """What a case record keeps of this run: its command line, exit, times and its error line (or last line)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        last = self.error_lines[-1] if self.error_lines else (lines[-1] if lines else "")
        return {
            "argv": list(self.argv),
            "exit": self.returncode,
            "wall_s": round(self.wall_s, 2),
            "killed_at_s": None if self.killed_at_s is None else round(self.killed_at_s, 2),
            "started_s": None if self.started_s is None else round(self.started_s, 2),
            "traceback": self.traceback,
            "last_stderr_line": _no_machine_paths(last)[:400],
        }


Runner = Callable[..., Outcome]
"""``runner(argv, cwd, watch=None)`` runs ``worldmodel ARGV`` in ``cwd``: :func:`run_subprocess` or
:func:`run_in_process`."""


@dataclass(frozen=True)
class KillPlan:
    """SIGKILL ``at_s`` seconds after the start, or after the path ``after`` (relative to the run's folder) exists."""

    at_s: float
    after: str | None = None


def command_env() -> dict[str, str]:
    """The environment of a command's process: one OpenMP thread (busy 2-core machines), no debug tracebacks."""
    env = {k: v for k, v in os.environ.items() if k != "WORLDMODEL_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: files may grow to ``limit`` bytes; a write past it fails with EFBIG instead of a signal."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _kill_when_due(
    proc: subprocess.Popen, plan: KillPlan, cwd: Path, start: float, deadline: float
) -> tuple[float | None, float | None]:
    """Wait for ``proc``, sending SIGKILL when ``plan`` says (or at ``deadline``); the seconds since the start when
    the kill was sent (None: the run ended first) and when ``plan.after`` appeared (None: never)."""
    clock = start if plan.after is None else None
    while proc.poll() is None:
        now = time.monotonic()
        if clock is None and (cwd / plan.after).exists():
            clock = now
        if (clock is not None and now - clock >= plan.at_s) or now > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            return now - start, None if clock is None or plan.after is None else clock - start
        time.sleep(0.005)
    return None, None if clock is None or plan.after is None else clock - start


def _drain(stream: Any, chunks: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        chunks.append(chunk)


def run_subprocess(
    argv: Sequence[str], cwd: Path, *, watch: str | None = None, kill: KillPlan | None = None,
    file_size_limit: int | None = None,
) -> Outcome:  # fmt: skip
    """Run ``python -m worldmodel ARGV`` in ``cwd`` as its own process group: SIGKILL it as ``kill`` says, or limit
    the size of the files it writes (its output goes through pipes, which the limit leaves alone). ``watch``: a path
    (relative to ``cwd``) whose first appearance is timed (``Outcome.started_s``). Processes the command left
    behind (workers of a killed run) are killed after it ends, so that nothing of a case outlives it."""
    cmd = [sys.executable, "-m", "worldmodel", *argv]
    preexec = _file_size_limit(file_size_limit) if file_size_limit is not None else None
    began, start = time.time(), time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=command_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec)  # fmt: skip
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=_drain, args=args, daemon=True) for args in ((proc.stdout, out),
                                                                                     (proc.stderr, err))]  # fmt: skip
    for reader in readers:
        reader.start()
    killed_at = started = None
    plan = kill or KillPlan(math.inf, after=watch)
    try:
        killed_at, started = _kill_when_due(proc, plan, Path(cwd), start, deadline=start + TIMEOUT_S)
        returncode = proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group this run started (start_new_session): its leftovers
        for reader in readers:
            reader.join(timeout=10)
    wall = time.monotonic() - start
    stdout, stderr = (b"".join(chunks).decode(errors="replace") for chunks in (out, err))
    return Outcome(tuple(argv), returncode, stdout, stderr, wall, killed_at, started, began)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_in_process(argv: Sequence[str], cwd: Path, watch: str | None = None) -> Outcome:
    """Run ``worldmodel ARGV`` in this process (:func:`worldmodel.cli.main`, output captured): the modules are
    loaded already, so it starts at once and all its wall time is work (``watch`` is not needed). An exception
    ``main`` lets through is a traceback and exit 1, as in a process of its own."""
    from worldmodel.cli import main

    out, err = io.StringIO(), io.StringIO()
    began, start = time.time(), time.monotonic()
    with _working_directory(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            returncode = main(list(argv))
        except SystemExit as exc:
            returncode = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            returncode = 1
    return Outcome(tuple(argv), returncode, out.getvalue(), err.getvalue(), time.monotonic() - start, began=began)


_REPO = Path(__file__).resolve().parents[2]
_MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|home|tmp|root|scratch|Users|mnt|usr|opt)/[^\s'\":,)]*")


def _no_machine_paths(text: str) -> str:
    """``text`` without absolute paths of this machine (records are committed): the repository's and the
    interpreter's become relative, any other becomes ``<path>``."""
    for prefix, name in ((sys.prefix, "<venv>"), (str(_REPO), "<repo>")):
        text = text.replace(prefix, name)
    return _MACHINE_PATH.sub("<path>", text)
