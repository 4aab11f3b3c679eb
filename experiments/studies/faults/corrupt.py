"""Corrupt files: each kind of file a command reads, truncated, bit-flipped, incomplete (a key, tensor or table
missing) or emptied, then read; the reader should refuse it in one line naming the file.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "config.json"
>>> _ = path.write_text('{"a": 1, "b": 2}')
>>> drop_key(path, "a"), json.loads(path.read_text())
("without 'a'", {'b': 2})
>>> truncate(path)
'cut from 13 to 6 bytes'
>>> _ = path.write_text('{"seed": 1000}')
>>> flip_bit(path, "seed").split(":")[0], json.loads(path.read_text())
('bit 0 of byte 12 of 14', {'seed': 1001})
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.studies.faults.commands import (
    Workspace,
    agent_argv,
    check_evaluate,
    evaluate_argv,
    read_json,
    tune_argv,
    vae_argv,
)


def truncate(path: Path) -> str:
    """Keep the first half of ``path``; what was done."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return f"cut from {len(data):,} to {len(data) // 2:,} bytes"


def flip_bit(path: Path, number: str | None = None) -> str:
    """Flip the lowest bit of one byte of ``path``, the hardest flip to notice without a checksum: of the last digit of
    the JSON number under the key ``number`` (the file stays valid JSON, one value changes), else of the middle byte;
    what was done, with the text around it for a text file."""
    data = bytearray(path.read_bytes())
    found = re.search(rf'"{re.escape(number)}": -?\d+'.encode(), data) if number else None
    at = found.end() - 1 if found else len(data) // 2
    before = bytes(data[max(0, at - 12) : at + 12])
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    done = f"bit 0 of byte {at:,} of {len(data):,}"
    with contextlib.suppress(UnicodeDecodeError):  # text: show the change
        text, after = before.decode(), bytes(data[max(0, at - 12) : at + 12]).decode()
        if all(c.isprintable() or c in "\n\t" for c in text + after):
            done += f": {text!r} -> {after!r}"
    return done


def empty_json(path: Path) -> str:
    path.write_text("{}\n")
    return "replaced by {}"


def drop_key(path: Path, key: str) -> str:
    """``path`` without ``key``: a JSON object's key, an npz array, a safetensors tensor or an SQLite table; what
    was done."""
    if path.suffix == ".json":
        data = read_json(path)
        del data[key]
        path.write_text(json.dumps(data, indent=2) + "\n")
    elif path.suffix == ".npz":
        with np.load(path) as stored:
            arrays = {k: stored[k] for k in stored.files if k != key}
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    elif path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import save_file

        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys() if k != key}
        save_file(tensors, str(path), metadata=metadata)
    elif path.suffix == ".db":
        with contextlib.closing(sqlite3.connect(path)) as con:
            con.execute(f"DROP TABLE {key}")
            con.commit()
    else:
        raise ValueError(f"cannot drop a key from {path}")
    return f"without {key!r}"


@dataclass(frozen=True)
class FileKind:
    """A kind of file the commands read: how to set up a case holding one, which of its files each damage hits,
    and the command that then reads it."""

    name: str
    reader: str
    """The command (of :data:`COMMANDS`) whose run reads it."""
    prepare: Callable[[Workspace, str], None]
    """Copy what the reader reads into the case folder."""
    argv: Callable[[Workspace, str], list[str]]
    """The reader's command line in the case folder."""
    targets: dict[str, str]
    """Per damage (``truncated``, ``bit-flipped``, ``incomplete``, ``empty``), the file it hits (in the case)."""
    missing_key: str
    """What ``incomplete`` removes from its target."""
    flipped_number: str | None = None
    """For a JSON target of ``bit-flipped``: the key whose number the flip changes (see :func:`flip_bit`), so that
    the case does not depend on what lies in the middle of the file."""
    cache: bool = False
    """A cache the reader may rebuild: starting over (saying so) with results equal to the reference's passes too."""


def _first_shard(case: Path) -> str:
    return sorted(p.name for p in (case / "data" / "shards").glob("*.frames.npy"))[0].removesuffix(".frames.npy")


def _copy(ws: Workspace, source: str, case: str, name: str) -> None:
    src, dst = ws.root / source, ws.root / case / name
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*"))
    else:
        shutil.copy2(src, dst)


def _shard_case(ws: Workspace, case: str) -> None:
    _copy(ws, ws.dataset(), case, "data")


def _shard_argv(ws: Workspace, case: str) -> list[str]:
    argv = vae_argv(ws, case)
    argv[1] = f"{case}/data"
    return argv


def _agent_run_case(ws: Workspace, case: str) -> None:
    _copy(ws, ws.result("train-agent-ppo"), case, "run")


def _evaluate_copy_argv(ws: Workspace, case: str) -> list[str]:
    argv = evaluate_argv(ws, case)
    argv[1] = f"{case}/run"
    return argv


def _progress_case(ws: Workspace, case: str) -> None:
    shutil.copy2(ws.progress_sample(), ws.root / case / "evaluation.progress.json")


def _agent_reader_argv(memory: bool) -> Callable[[Workspace, str], list[str]]:
    def argv(ws: Workspace, case: str) -> list[str]:
        vae = f"{case}/vae.safetensors" if not memory else ws.vae()
        line = agent_argv("ppo")(ws, case)
        line[line.index("--vae") + 1] = vae
        return [*line, "--memory", f"{case}/memory.safetensors"] if memory else line

    return argv


def _study_argv(ws: Workspace, case: str) -> list[str]:
    return tune_argv(ws, case)


FILE_KINDS: dict[str, FileKind] = {
    k.name: k
    for k in (
        FileKind(
            "data shard",
            "train-vae",
            _shard_case,
            _shard_argv,
            {
                "truncated": "data/shards/{shard}.frames.npy",
                "bit-flipped": "data/shards/{shard}.frames.npy",
                "incomplete": "data/shards/{shard}.meta.npz",
            },
            missing_key="rewards",
        ),
        FileKind(
            "VAE checkpoint",
            "train-agent-ppo",
            lambda ws, case: _copy(ws, ws.vae(), case, "vae.safetensors"),
            _agent_reader_argv(memory=False),
            dict.fromkeys(("truncated", "bit-flipped", "incomplete"), "vae.safetensors"),
            missing_key="fc_mu.weight",
        ),
        FileKind(
            "memory checkpoint",
            "train-agent-ppo",
            lambda ws, case: _copy(ws, ws.memory(), case, "memory.safetensors"),
            _agent_reader_argv(memory=True),
            dict.fromkeys(("truncated", "bit-flipped", "incomplete"), "memory.safetensors"),
            missing_key="lstm.weight_hh_l0",
        ),
        FileKind(
            "policy files",
            "evaluate",
            _agent_run_case,
            _evaluate_copy_argv,
            {
                "truncated": "run/policy.safetensors",
                "bit-flipped": "run/policy.safetensors",
                "incomplete": "run/policy.json",
                "empty": "run/policy.json",
            },
            missing_key="policy_kwargs",
        ),
        FileKind(
            "run config.json",
            "evaluate",
            _agent_run_case,
            _evaluate_copy_argv,
            dict.fromkeys(("truncated", "bit-flipped", "incomplete", "empty"), "run/config.json"),
            missing_key="stack",
            flipped_number="eval_seed",
        ),
        FileKind(
            "evaluation progress",
            "evaluate",
            _progress_case,
            evaluate_argv,
            dict.fromkeys(("truncated", "bit-flipped", "incomplete", "empty"), "evaluation.progress.json"),
            missing_key="log",
            flipped_number="state",
            cache=True,
        ),
        FileKind(
            "tune study",
            "tune",
            lambda ws, case: _copy(ws, ws.result("tune"), case, "study"),
            _study_argv,
            dict.fromkeys(("truncated", "bit-flipped", "incomplete"), "study/study.db"),
            missing_key="trial_values",
        ),
    )
}
"""Every file kind of the corrupt-file cases."""


DAMAGES: dict[str, Callable[[Path, FileKind], str]] = {
    "truncated": lambda path, kind: truncate(path),
    "bit-flipped": lambda path, kind: flip_bit(path, kind.flipped_number),
    "incomplete": lambda path, kind: drop_key(path, kind.missing_key),
    "empty": lambda path, kind: empty_json(path),
}
"""Each damage: ``damage(path, kind)`` applies it to a file of ``kind`` and says what it did."""


def corrupt_case(ws: Workspace, kind: FileKind, how: str) -> dict[str, Any]:
    """Damage one file of ``kind`` as ``how`` (of :data:`DAMAGES`) says and run its reader once; the case's record.
    Where the reader is ``evaluate`` and it exits 0, its returns are compared with the reference's."""
    case = ws.fresh(f"corrupt/{kind.name.replace(' ', '-').replace('.', '-').lower()}/{how}")
    kind.prepare(ws, case)
    target = kind.targets[how]
    if "{shard}" in target:
        target = target.format(shard=_first_shard(ws.root / case))
    done = DAMAGES[how](ws.root / case / target, kind)
    outcome = ws.runner(kind.argv(ws, case), ws.root)
    refused = outcome.one_line_error and outcome.names(target)
    equal = None
    if kind.reader == "evaluate" and outcome.returncode == 0:
        check = check_evaluate(ws.root / case / "evaluation.json", ws.root / ws.result("evaluate"))
        equal = check.finished and bool(check.matches)
    started_over = kind.cache and outcome.returncode == 0 and outcome.names(target) and bool(equal)
    return {
        "command": kind.reader,
        "case": case,
        "fault": "corrupt file",
        "file_kind": kind.name,
        "damage": how,
        "file": target,
        "done": done,
        "run": outcome.to_record(),
        "one_line_error": outcome.one_line_error,
        "names_the_file": outcome.names(target),
        "results_equal_to_reference": equal,
        "recovered": bool(refused or started_over),
    }
