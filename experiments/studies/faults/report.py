"""The campaign: every case for every command and file kind, a record each, and the report written from the records
alone (``python -m experiments.studies.faults --rebuild``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from experiments.pipeline.machine import cpu_model
from experiments.studies.faults.cases import disk_full_case, kill_case, kill_moments
from experiments.studies.faults.commands import COMMANDS, FAST, Budget, Workspace
from experiments.studies.faults.corrupt import FILE_KINDS, corrupt_case
from experiments.studies.faults.running import Runner, run_in_process, run_subprocess
from worldmodel.common.atomic import write_json_atomic

RECORDS_DIR = "records"
CAMPAIGN_FILE = "campaign.json"
"""The campaign's settings, machine and date, in ``records/``."""


def _slug(record: dict[str, Any]) -> str:
    return record["case"].replace("/", "__")


def save_record(records: Path, record: dict[str, Any]) -> None:
    write_json_atomic(records / f"{_slug(record)}.json", record)


def run_campaign(
    out: str | Path, report: str | Path, *, kills: int = 5, seed: int = 0, budget: Budget | None = None,
    runner: Runner = run_in_process, commands: Sequence[str] | None = None, file_kinds: Sequence[str] | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every case of the campaign (module docstring) in ``out``, each record written to ``report/records/`` as it
    ends, then ``report/README.md``; returns the records. References are timed in processes of their own;
    ``runner``: see :class:`Workspace`."""
    started = time.monotonic()
    budget = budget or Budget()
    ws = Workspace(out, budget, runner, reference_runner=run_subprocess)
    records_dir = Path(report) / RECORDS_DIR
    shutil.rmtree(records_dir, ignore_errors=True)
    records_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    records = []

    def keep(record: dict[str, Any]) -> None:
        records.append(record)
        save_record(records_dir, record)
        verdict = "recovered" if record["recovered"] else "NOT RECOVERED"
        say(f"{time.monotonic() - started:7.1f} s  {record['case']}: {verdict}")

    for name in COMMANDS if commands is None else commands:
        command = COMMANDS[name]
        reference = ws.reference(name)
        keep({"command": name, "case": f"{name}/reference", "fault": "none (reference)",
              "run": reference.to_record(), "recovered": True})  # fmt: skip
        moments = kill_moments(ws.working_s[name], kills, int(rng.integers(2**31)))
        for index, moment in enumerate(moments):
            keep(kill_case(ws, command, index, moment))
        keep(disk_full_case(ws, command))
    for name in FILE_KINDS if file_kinds is None else file_kinds:
        kind = FILE_KINDS[name]
        for how in kind.targets:
            keep(corrupt_case(ws, kind, how))

    isolated = runner is run_subprocess
    options = [f"--kills {kills}", f"--seed {seed}", *(["--fast"] if budget == FAST else [])]
    options += ["--isolated"] if isolated else []
    options += [f"--commands {' '.join(commands)}"] if commands is not None else []
    options += [f"--file-kinds {' '.join(repr(k) for k in file_kinds)}"] if file_kinds is not None else []
    settings = {
        "command": f"python -m experiments.studies.faults {' '.join(options)}",
        "isolated": isolated,
        "kills_per_command": kills,
        "seed": seed,
        "budget": asdict(budget),
        "processor": cpu_model(),
        "cores": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    write_json_atomic(records_dir / CAMPAIGN_FILE, settings)
    write_report(Path(report))
    return records


def load_records(report: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The campaign's settings and its case records (sorted by case), from ``report/records/``."""
    records_dir = report / RECORDS_DIR
    settings = json.loads((records_dir / CAMPAIGN_FILE).read_text())
    paths = [p for p in sorted(records_dir.glob("*.json")) if p.name != CAMPAIGN_FILE]
    return settings, sorted((json.loads(p.read_text()) for p in paths), key=lambda r: r["case"])


def _yes_no(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


def _quote(text: str, limit: int = 160) -> str:
    """``text`` as inline code in a table cell, cut at ``limit`` characters."""
    text = text.replace("|", "\\|").replace("`", "'")
    return f"`{text[:limit]}{'…' if len(text) > limit else ''}`" if text else "–"


def _runs(record: dict[str, Any]) -> str:
    return ", ".join(f"{'--resume ' if r['resume'] else ''}→ {r['exit']}" for r in record["reruns"])


def _lost(record: dict[str, Any]) -> str:
    return "–" if record["lost"] < 0 else str(record["lost"])


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _determinism(records: list[dict[str, Any]]) -> str:
    """Whether the runs that continued from partial output ended equal to the reference, and how many did."""
    resumed = [r["matches_reference"] for r in records if r["state_at_fault"] == "partial" and r["finished"]]
    if not resumed:
        return "– (no fault hit a run part-way)"
    return f"{_yes_no(all(resumed))} ({sum(resumed)}/{len(resumed)} resumed runs equal to the reference)"


def _summary_rows(cases: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    faulted = [r for r in cases if r["fault"] in ("kill -9", "disk full")]
    for name in dict.fromkeys(r["command"] for r in faulted):
        mine = [r for r in faulted if r["command"] == name]
        kills = sum(r["fault"] == "kill -9" for r in mine)
        faults = f"{kills} kill -9" + (", 1 disk full" if len(mine) > kills else "")
        recovered = f"{sum(r['recovered'] for r in mine)}/{len(mine)}"
        lost, duplicated = sum(max(0, r["lost"]) for r in mine), sum(r["duplicated"] for r in mine)
        rows.append([f"`{name}`", faults, recovered, lost, duplicated, _determinism(mine)])
    corrupt = [r for r in cases if r["fault"] == "corrupt file"]
    if corrupt:
        kinds = len({r["file_kind"] for r in corrupt})
        rows.append([f"corrupt files ({kinds} kinds)", f"{len(corrupt)} damaged files",
                     f"{sum(r['recovered'] for r in corrupt)}/{len(corrupt)}", "–", "–", "–"])  # fmt: skip
    return rows


def _failure(record: dict[str, Any]) -> str:
    """Why a case did not pass, in one line."""
    if record["fault"] == "corrupt file":
        run = record["run"]
        if run["exit"] == 0:
            equal = record["results_equal_to_reference"]
            results = "" if equal is None else f", returns {'equal to' if equal else 'different from'} the reference's"
            return f"{record['done']}; not detected: exit 0{results}"
        error = _quote(run["last_stderr_line"], 240)
        return f"{record['done']}; exit {run['exit']}, traceback {run['traceback']}: {error}"
    why = []
    if record["fault"] == "disk full" and not record["one_line_error"]:
        run = record["full_disk_run"]
        why.append(f"on the full disk: exit {run['exit']}, traceback {run['traceback']}: "
                   f"{_quote(run['last_stderr_line'], 240)}")  # fmt: skip
    if record["fault"] == "disk full" and record["damaged_files"]:
        why.append(f"damaged files {record['damaged_files']}")
    why.append(f"at the fault: {record['at_fault']}; runs after it: {_runs(record)}, the last: "
               f"{_quote(record['reruns'][-1]['last_stderr_line'], 240)}")  # fmt: skip
    if record["reruns"][-1]["exit"] == 0:
        why.append(f"finished {record['finished']}, lost {_lost(record)}, duplicated {record['duplicated']}, "
                   f"{json.dumps(record['check'])}")  # fmt: skip
    return "; ".join(why)


def report_sections(settings: dict[str, Any], cases: list[dict[str, Any]]) -> list[str]:
    """The generated part of the report, from the records alone."""
    kills = [[f"`{r['command']}`", f"{r['moment_s']:.2f}", r["at_fault"], r["writes_in_flight"], _runs(r),
              _yes_no(r["recovered"]), _lost(r), r["duplicated"], _yes_no(r["matches_reference"])]
             for r in cases if r["fault"] == "kill -9"]  # fmt: skip
    disks = [[f"`{r['command']}`", f"{r['file_size_limit']:,}", r["full_disk_run"]["exit"],
              _yes_no(r["one_line_error"]), _yes_no(not r["damaged_files"]), r["at_fault"], _runs(r),
              _yes_no(r["recovered"]), _lost(r), _quote(r["full_disk_run"]["last_stderr_line"])]
             for r in cases if r["fault"] == "disk full"]  # fmt: skip
    corrupt = [[r["file_kind"], f"`{r['file'].split('/')[-1]}`", r["damage"], f"`{r['command']}`", r["run"]["exit"],
                _yes_no(r["one_line_error"]), _yes_no(r["names_the_file"]), _yes_no(r["results_equal_to_reference"]),
                _yes_no(r["recovered"]), _quote(r["run"]["last_stderr_line"])]
               for r in cases if r["fault"] == "corrupt file"]  # fmt: skip
    failures = [f"- `{r['case']}`: {_failure(r)}" for r in cases if not r["recovered"]]
    where = "in processes of their own" if settings["isolated"] else (
        "in the campaign's process (`worldmodel.cli.main`: the same code, without its 5-8 s of imports each time)"
    )  # fmt: skip
    return [
        f"Processor: {settings['processor']} ({settings['cores']} cores); {settings['date']}; the campaign took "
        f"{settings['wall_s'] / 60:.1f} min. `{settings['command']}`: {settings['kills_per_command']} kill moments "
        "per command, drawn uniformly within the reference run's working time (from its first file to its last "
        "write) and "
        "timed from the killed run's first file. References, killed and disk-full runs ran in processes of their "
        f"own; the runs after a fault and the readers of damaged files {where}. Toy env budgets: "
        f"`{json.dumps(settings['budget'])}`.",
        _table(
            ["command", "faults injected", "recovered", "data lost (goal 0)", "duplicated", "deterministic on resume"],
            _summary_rows(cases),
        ),
        "Recovered: the runs after the fault exit 0 (3 at most), the output reaches its target (episodes, steps, "
        "trials) with nothing lost or duplicated (episodes, epochs, evaluations, optimiser updates, replay-buffer "
        "transitions, trials), and, for a full disk, the failing run ended in one error line "
        "leaving intact files. Deterministic on resume: the runs that continued from what a fault left part-way end "
        "equal to the uninterrupted run (episodes, checkpoints and metrics, policy weights and evaluation returns, "
        "trials), timings aside. `train-agent` is not meant to resume bit for bit: a checkpoint holds no env "
        "states, so the resumed run starts new episodes (PPO a new rollout); its step count, optimiser updates and "
        "replay buffer are whole (checked above), its later weights differ.",
        "## Kill -9\n\nMoment: seconds after the killed run's first file. At the kill: what it had committed; in "
        "flight: atomic writes cut short (their temporary files). Runs after it: the exit status of each, with "
        "`--resume` or not.\n\n"
        + _table(
            [
                "command",
                "moment (s)",
                "at the kill",
                "in flight",
                "runs after it",
                "recovered",
                "lost",
                "duplicated",
                "equal to the reference",
            ],
            kills,
        ),
        "## Disk full\n\nEach file limited to half the largest file of the reference (`RLIMIT_FSIZE`, SIGXFSZ "
        "ignored); expected: exit 2, one error line, no traceback, the files written before intact; then the runs "
        "without the limit.\n\n"
        + _table(
            [
                "command",
                "file size limit (bytes)",
                "exit",
                "one line",
                "files intact",
                "left",
                "runs after it",
                "recovered",
                "lost",
                "error",
            ],
            disks,
        ),
        "## Corrupt files\n\nExpected: exit 2 with one line naming the file (an evaluation's progress file, a cache, "
        "may instead be started over, saying so, when the returns then equal the reference's). Results equal: for "
        "`evaluate` runs that exited 0, whether their returns equal the reference's.\n\n"
        + _table(
            [
                "file kind",
                "file",
                "damage",
                "read by",
                "exit",
                "one line",
                "names the file",
                "results equal",
                "passed",
                "error",
            ],
            corrupt,
        ),
        "## Not recovered\n\n" + ("\n".join(failures) if failures else "None."),
    ]


def write_report(report: str | Path, into: str | Path | None = None) -> Path:
    """Write the generated part of ``report/README.md`` (``into/README.md`` if given) from ``report/records/``; the
    prose around it is kept. Returns the README written."""
    from experiments.pipeline.markdown import write_markdown

    settings, cases = load_records(Path(report))
    return write_markdown(Path(into or report) / "README.md", report_sections(settings, cases))
