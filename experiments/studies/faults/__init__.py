"""The fault campaign (issue 38): ``kill -9`` at random moments, a full disk and corrupt files against every long
command, on the toy env with tiny budgets; whether each one recovers, loses or duplicates nothing, and ends as an
uninterrupted run does::

    nice python -m experiments.studies.faults --out runs/faults --report experiments/reports/faults

The commands (:mod:`~experiments.studies.faults.commands`): ``collect``, ``train-vae``, ``train-memory``,
``train-agent`` with PPO and with TQC (whose checkpoints hold its replay buffer), ``evaluate`` and ``tune`` (a tiny
Optuna study in its SQLite file). Each gets, in its own folder of ``OUT``:

- a reference: one uninterrupted run, timed; the inputs of the commands after it (VAE, memory model, agent) are
  the references of the commands before, and the trainers read a small dataset collected first (``inputs/data``);
- kill cases (``--kills K``, :mod:`~experiments.studies.faults.cases`): the command in a fresh folder, sent SIGKILL
  at a moment drawn uniformly within the reference's working time (from its first file to its last write; seeded,
  so some land during checkpoint writes) and timed from the killed run's first file, then run again until it exits 0
  (:func:`~experiments.studies.faults.cases.recover`: with ``--resume`` where the command has it, without when it
  says there is nothing to resume; 3 runs at most); its output is then checked against the reference: finished,
  nothing lost or duplicated, and equal to the reference where the command is deterministic;
- a disk-full case: the command with ``RLIMIT_FSIZE`` at half the size of the largest file its reference wrote
  (SIGXFSZ ignored, so that write fails with EFBIG), expected to exit 2 with one error line and no traceback,
  leaving the files written before intact; then run again without the limit, checked as a kill case.

Then corrupt files (:mod:`~experiments.studies.faults.corrupt`): a data shard, a VAE checkpoint, a memory
checkpoint, an agent's policy files, a run's ``config.json``, an evaluation's progress file and a tune study, each
truncated, bit-flipped, incomplete (a key, tensor or table missing) and, for JSON, emptied, then read by the command
that reads it, which should exit 2 with one line naming the file. An evaluation's progress file is a cache:
``evaluate`` starting over and saying so (naming the file) also passes, when its returns then equal the reference's.

References, killed and disk-full runs have processes of their own; the runs after a fault and the readers of
damaged files run in the campaign's process by default
(:func:`~experiments.studies.faults.running.run_in_process`: the same code without 5-8 s of imports each time;
``--isolated``: processes of their own too). Each case is one JSON
record in ``REPORT/records/``; the generated part of ``REPORT/README.md`` is written from the records alone
(``--rebuild`` writes it again without running anything; the prose outside its markers is kept). Commands run in
``OUT`` with paths relative to it, so the records name no path of the machine.
"""

from experiments.studies.faults.cases import damaged_files, disk_full_case, kill_case, kill_moments, recover
from experiments.studies.faults.commands import COMMANDS, FAST, Budget, Check, Command, Workspace
from experiments.studies.faults.corrupt import DAMAGES, FILE_KINDS, FileKind, corrupt_case
from experiments.studies.faults.report import load_records, run_campaign, write_report
from experiments.studies.faults.running import KillPlan, Outcome, run_in_process, run_subprocess

__all__ = [
    "COMMANDS",
    "DAMAGES",
    "FAST",
    "FILE_KINDS",
    "Budget",
    "Check",
    "Command",
    "FileKind",
    "KillPlan",
    "Outcome",
    "Workspace",
    "corrupt_case",
    "damaged_files",
    "disk_full_case",
    "kill_case",
    "kill_moments",
    "load_records",
    "recover",
    "run_campaign",
    "run_in_process",
    "run_subprocess",
    "write_report",
]
