"""The faults of the campaign that a command should recover from: ``kill -9`` at a moment (:func:`kill_case`) and a
full disk (:func:`disk_full_case`), each followed by the runs a user would make (:func:`recover`) and a check
against the reference; one JSON-ready record per case.

>>> kill_moments(10.0, 3, seed=0) == kill_moments(10.0, 3, seed=0)
True
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from experiments.studies.faults.commands import Check, Command, Workspace
from experiments.studies.faults.running import KillPlan, Outcome, Runner, run_subprocess
from worldmodel.common.atomic import TEMP_SUFFIX

MAX_RUNS = 3
"""Runs after a fault before a case counts as not recovered."""


def writes_in_flight(folder: Path) -> int:
    """Temporary files of atomic writes (``.NAME.XXXX.tmp``) under ``folder``: a kill landed during those writes."""
    return sum(1 for p in folder.rglob(f".*{TEMP_SUFFIX}")) if folder.exists() else 0


def damaged_files(folder: Path) -> list[str]:
    """Files under ``folder`` (hidden ones aside) that do not read whole: JSON, JSON lines, safetensors, npz, npy,
    zip and SQLite are read; ``[]`` when all are intact."""
    from safetensors import safe_open

    bad = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        try:
            suffix = path.suffix
            if suffix == ".json":
                json.loads(path.read_text())
            elif suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            elif suffix == ".safetensors":
                with safe_open(str(path), framework="numpy") as f:
                    [f.get_tensor(k) for k in f.keys()]
            elif suffix == ".npz":
                with np.load(path) as data:
                    [data[k] for k in data.files]
            elif suffix == ".npy":
                np.load(path, mmap_mode="r")[...]
            elif suffix == ".zip":
                with zipfile.ZipFile(path) as archive:
                    if archive.testzip() is not None:
                        raise ValueError("bad member")
            elif suffix == ".db":
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                    if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                        raise ValueError("integrity check failed")
        except Exception:
            bad.append(str(path.relative_to(folder)))
    return bad


def recover(ws: Workspace, command: Command, case: str, runner: Runner | None = None) -> list[Outcome]:
    """Run ``command`` into ``case`` again until it exits 0, :data:`MAX_RUNS` runs at most, as a user would: with
    ``--resume`` first where the command has it, then without when it refuses (it says there is nothing to
    resume), and so on; commands without ``--resume`` get the same command line once more."""
    runner = runner or ws.runner
    resume, runs = command.resume, []
    while len(runs) < (MAX_RUNS if command.resume else 2):
        outcome = runner([*command.argv(ws, case), *(["--resume"] if resume else [])], ws.root)
        runs.append(outcome)
        if outcome.returncode == 0:
            break
        resume = command.resume and not resume
    return runs


def kill_moments(wall_s: float, count: int, seed: int) -> list[float]:
    """``count`` moments drawn uniformly within ``wall_s`` seconds, seeded."""
    return sorted(float(t) for t in np.random.default_rng(seed).uniform(0.0, wall_s, count))


def _case_record(ws: Workspace, command: Command, case: str, fault: str, **extra: Any) -> dict[str, Any]:
    """The record of a case whose fault has just happened: what the run had committed, the runs after it
    (:func:`recover`), the check of their output against the reference's, and whether it recovered."""
    result = ws.root / case / command.result
    progress = command.progress(result)
    in_flight = writes_in_flight(ws.root / case)
    runs = recover(ws, command, case)
    ended = runs[-1].returncode == 0
    check = command.check(result, ws.root / ws.result(command.name)) if ended else Check(False, lost=-1)  # -1: unknown
    return {
        "command": command.name,
        "case": case,
        "fault": fault,
        **extra,
        "at_fault": progress.text,
        "state_at_fault": progress.state,
        "writes_in_flight": in_flight,
        "reruns": [{"resume": "--resume" in o.argv, **o.to_record()} for o in runs],
        "recovered": ended and check.finished and check.lost == 0 and check.duplicated == 0,
        "finished": check.finished,
        "lost": check.lost,
        "duplicated": check.duplicated,
        "matches_reference": check.matches,
        "check": check.detail,
    }


def kill_case(
    ws: Workspace, command: Command, index: int | str, moment_s: float, *, after: str | None = None
) -> dict[str, Any]:
    """SIGKILL a run of ``command`` ``moment_s`` seconds after its first file appeared (or the file ``after``, in the
    case folder), then :func:`recover`; the case's record."""
    ws.reference(command.name)
    case = ws.fresh(f"{command.name}/kill-{index}")
    plan = KillPlan(moment_s, after=f"{case}/{after or command.first_file}")
    killed = run_subprocess(command.argv(ws, case), ws.root, kill=plan)
    return _case_record(ws, command, case, "kill -9", moment_s=round(moment_s, 2), killed=killed.to_record(),
                        killed_before_the_end=killed.killed_at_s is not None)  # fmt: skip


def disk_full_case(ws: Workspace, command: Command, *, limit: int | None = None) -> dict[str, Any]:
    """Run ``command`` with files limited to ``limit`` bytes (default: half the largest file of its reference),
    then :func:`recover` without the limit; the case's record. It recovered when the limited run also ended in one
    error line (exit 2, no traceback) and left no damaged file."""
    reference = ws.root / ws.result(command.name)
    if limit is None:
        files = [reference] if reference.is_file() else [p for p in reference.rglob("*") if p.is_file()]
        limit = max(p.stat().st_size for p in files) // 2
    case = ws.fresh(f"{command.name}/disk-full")
    full = run_subprocess(command.argv(ws, case), ws.root, file_size_limit=limit)
    damaged = damaged_files(ws.root / case)
    record = _case_record(ws, command, case, "disk full", file_size_limit=limit, full_disk_run=full.to_record(),
                          one_line_error=full.one_line_error, damaged_files=damaged)  # fmt: skip
    record["recovered"] = record["recovered"] and full.one_line_error and not damaged
    return record
