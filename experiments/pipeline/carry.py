"""Carry a pipeline's unfinished agent runs to the next machine through git: ``save`` and ``restore``.

A 4M-frame run takes longer than a working session, and a new machine starts without ``runs/``.
An on-policy run's resume state is small (a PPO model of a few hundred kB, its VecNormalize
statistics and evaluation history), so it can be committed: ``save`` copies, of every agent run
of a pipeline output, the files a resume or a report needs, leaving out what can be made again
(the VAE and memory copies, which ``restore`` copies back from the checkpoints the run's config
names and checks against its SHA-256), what is not needed (TensorBoard logs, videos, older
checkpoints), and refusing what is too big for git (replay buffers). A finished run needs no resume
checkpoint to be evaluated or reported, so a finished off-policy run is carried without its
checkpoint (and its replay buffer); it can no longer be trained on from there::

    python -m experiments.pipeline.carry save runs/carracing-recipe-4m    # -> experiments/carry/carracing-recipe-4m
    python -m experiments.pipeline.carry restore experiments/carry/carracing-recipe-4m --out runs/carracing-recipe-4m
    python -m experiments.carracing --preset recipe-4m --from-scratch --jobs 2   # resumes where it stopped

``restore`` never replaces a run that is further along than the carried one. Once the runs are
reported, their records are committed with the report (``experiments/reports/<name>/records``):
``save --records`` that folder leaves out of the carried folder every file identical there, and
names them, with their SHA-256, in ``records.json``; ``restore`` takes them from the report's records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from agents.bundle import BEST_DIR, BEST_FILE, MEMORY_FILE, VAE_FILE
from agents.resume import CHECKPOINT_DIR, STATE_FILE
from experiments.pipeline.records import PIPELINE_RECORDS, VIDEO_FILE, read_json
from worldmodel.cli import is_user_error
from worldmodel.common.atomic import atomic_dir
from worldmodel.common.errors import UserError
from worldmodel.vae.checkpoint import file_sha256

CARRY_DIR = Path("experiments/carry")
"""Where ``save`` puts a pipeline's runs by default: ``experiments/carry/<pipeline folder name>``."""
MAX_FILE_MIB = 4.0
"""The largest file ``save`` copies: a model of the latent recipes is well under 1 MiB; replay buffers are not."""
COPIES = {VAE_FILE: ("vae", "vae_sha256"), MEMORY_FILE: ("memory", "memory_sha256")}
"""Checkpoint copies in a run directory: the config key of their source and of their SHA-256."""
SHARED_FILE = "records.json"
"""``<carried>/records.json``: the report's records folder (relative to the carried folder) holding the files
``save`` left out as identical there, and their SHA-256 by path in the pipeline output."""


def carried_files(run_dir: Path, without_checkpoint: bool) -> list[Path]:
    """The files of ``run_dir`` that ``save`` carries, relative to it: its top-level records and models (not the
    VAE, memory or video copies) and, of ``checkpoints/`` (unless ``without_checkpoint``: see
    :func:`leaves_out_checkpoint`) and ``best/``, the pointer and the files it names."""
    skipped = {*COPIES, VIDEO_FILE}
    files = [p.relative_to(run_dir) for p in sorted(run_dir.iterdir()) if p.is_file() and p.name not in skipped]
    for folder, pointer in ((CHECKPOINT_DIR, STATE_FILE), (BEST_DIR, BEST_FILE)):
        if folder == CHECKPOINT_DIR and without_checkpoint:
            continue
        record = read_json(run_dir / folder / pointer)
        if record is not None:
            files += [Path(folder, pointer), *(Path(folder, name) for name in record.get("files", {}).values())]
    return [f for f in files if not f.name.startswith(".")]  # no temporary files of a write under way


def _too_big(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > MAX_FILE_MIB * 2**20


def is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` trained for the agent steps its config asked for (its summary says so)."""
    summary, config = read_json(run_dir / "summary.json"), read_json(run_dir / "config.json")
    return summary is not None and config is not None and summary["agent_steps"] >= config["agent"]["timesteps"]


def leaves_out_checkpoint(run_dir: Path) -> bool:
    """Whether ``save`` leaves out ``run_dir``'s resume checkpoint: the run is finished and the checkpoint holds a
    file too big for git (a replay buffer). An unfinished run's checkpoint is never left out: ``save`` refuses it."""
    state = read_json(run_dir / CHECKPOINT_DIR / STATE_FILE)
    if state is None or not is_finished(run_dir):
        return False
    return any(_too_big(run_dir / CHECKPOINT_DIR / name) for name in state.get("files", {}).values())


def save(out: str | Path, dest: str | Path | None = None, records: str | Path | None = None) -> Path:
    """Copy what resumes and reports the agent runs of the pipeline output ``out`` to ``dest`` (default:
    ``experiments/carry/<out's name>``), replacing it as a whole; returns ``dest``. With ``records`` (a report's
    records folder), the files identical there are left out (:func:`share_records`)."""
    out = Path(out)
    dest = CARRY_DIR / out.name if dest is None else Path(dest)
    runs = sorted(p for p in (out / "agents").glob("*__seed*") if (p / "config.json").is_file())
    if not runs:
        raise UserError(f"{out} holds no agent runs to carry (agents/*__seed*/config.json)")
    left_out = {run for run in runs if leaves_out_checkpoint(run)}
    sources = [(out / name, Path(name)) for name in PIPELINE_RECORDS if (out / name).is_file()]
    sources += [(run / f, Path("agents", run.name, f)) for run in runs for f in carried_files(run, run in left_out)]
    too_big = [f"{src} ({src.stat().st_size / 2**20:.1f} MiB)" for src, _ in sources if _too_big(src)]
    if too_big:
        raise UserError(
            f"{', '.join(too_big)}: larger than {MAX_FILE_MIB:g} MiB, too big to carry in git (a replay buffer?); "
            "finish such runs on one machine"
        )
    with atomic_dir(dest) as tmp:
        for src, rel in sources:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
        if records is not None:
            share_records(tmp, records, base=dest)
    for run in sorted(left_out):
        print(
            f"{run.name}: finished; its resume checkpoint holds a file over {MAX_FILE_MIB:g} MiB (a replay buffer) "
            "and is left out: the carried run can be evaluated and reported, not trained on"
        )
    return dest


def share_records(carried: str | Path, records: str | Path, base: str | Path | None = None) -> list[str]:
    """Leave out of the carried folder ``carried`` every file identical to the same path in the report's records
    folder ``records``, naming them in :data:`SHARED_FILE` with their SHA-256 (``restore`` checks them); returns
    them. ``base``: where ``carried`` will lie when it is read (default: ``carried``), for the records' relative path.

    A report's records are committed with it: one copy of them is enough.
    """
    carried, records = Path(carried), Path(records)
    shared: dict[str, Any] = read_json(carried / SHARED_FILE) or {"sha256": {}}
    where = os.path.relpath(records, Path(base if base is not None else carried))
    if shared.get("records", where) != where:
        raise UserError(f"{carried} already shares files with {shared['records']}, not {where}")
    for path in sorted(p for p in records.rglob("*") if p.is_file()):
        rel = path.relative_to(records)
        duplicate = carried / rel
        if duplicate.is_file() and (sha := file_sha256(path)) == file_sha256(duplicate):
            shared["sha256"][rel.as_posix()] = sha
            duplicate.unlink()
    if shared["sha256"]:
        shared = {"records": where, "sha256": dict(sorted(shared["sha256"].items()))}
        (carried / SHARED_FILE).write_text(json.dumps(shared, indent=1) + "\n")
    return list(shared["sha256"])


def carried_sources(carried: Path) -> dict[Path, Path]:
    """Every file ``save`` carried, by its path in the pipeline output: the carried folder's own, and those it shares
    with a report's records (:data:`SHARED_FILE`), each checked against its SHA-256."""
    sources = {p.relative_to(carried): p for p in sorted(carried.rglob("*")) if p.is_file()}
    sources.pop(Path(SHARED_FILE), None)
    shared = read_json(carried / SHARED_FILE)
    for rel, sha in (shared or {}).get("sha256", {}).items():
        path = carried / shared["records"] / rel
        if not path.is_file() or file_sha256(path) != sha:
            raise UserError(
                f"{carried} left {rel} to the report's records {carried / shared['records']}, where it is not there "
                "or has changed since: check out the commit the runs were carried from"
            )
        sources.setdefault(Path(rel), path)
    return sources


def _steps(summary: Path | None, state: Path | None) -> int:
    summary_record = read_json(summary) if summary is not None else None
    if summary_record is not None:
        return int(summary_record["agent_steps"])
    state_record = read_json(state) if state is not None else None
    return int(state_record["step"]) if state_record is not None else 0


def progress(run_dir: Path) -> int:
    """How far ``run_dir`` trained: its final agent steps, else its resume checkpoint's step, else 0."""
    return _steps(run_dir / "summary.json", run_dir / CHECKPOINT_DIR / STATE_FILE)


def restore(carried: str | Path, out: str | Path) -> list[str]:
    """Copy the runs ``save`` carried to the pipeline output ``out``, with the VAE (and memory) copies made again
    from the checkpoints their configs name; returns the runs restored. A run in ``out`` that is as far along or
    further is kept, and a checkpoint whose SHA-256 differs from the one the run trained on is refused."""
    carried, out = Path(carried), Path(out)
    sources = carried_sources(carried)
    runs = sorted({rel.parts[1] for rel in sources if len(rel.parts) > 2 and rel.parts[0] == "agents"})
    runs = [name for name in runs if "__seed" in name]
    if not runs:
        raise UserError(
            f"{carried} holds no carried agent runs: give a folder `python -m experiments.pipeline.carry save` made"
        )
    restored = []
    for name in runs:
        files = {
            rel.relative_to("agents", name): src for rel, src in sources.items() if rel.parts[:2] == ("agents", name)
        }
        target = out / "agents" / name
        if progress(target) >= _steps(files.get(Path("summary.json")), files.get(Path(CHECKPOINT_DIR, STATE_FILE))):
            continue
        config = json.loads(files[Path("config.json")].read_text())
        with atomic_dir(target) as tmp:
            for rel, src in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tmp / rel)
            for copy_name, (key, sha_key) in COPIES.items():
                source = config["agent"].get(key)
                if not config.get(sha_key) or not source:
                    continue
                if not Path(source).is_file() or file_sha256(source) != config[sha_key]:
                    raise UserError(
                        f"{name} trained on {source} with SHA-256 {config[sha_key][:12]}..., which is not here "
                        "or has changed since: check out the commit the run was carried from"
                    )
                shutil.copyfile(source, tmp / copy_name)
        restored.append(name)
    for record in PIPELINE_RECORDS:
        if Path(record) in sources and not (out / record).is_file():
            (out / record).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sources[Path(record)], out / record)
    return restored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.pipeline.carry", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    save_parser = commands.add_parser("save", help="copy a pipeline output's runs to a folder to commit")
    save_parser.add_argument("out", help="pipeline output directory, e.g. runs/carracing-recipe-4m")
    save_parser.add_argument("--to", help=f"destination (default: {CARRY_DIR}/<out's name>)")
    save_parser.add_argument(
        "--records",
        help="the runs' report's records folder (experiments/reports/<name>/records): files identical there are left "
        "out, and restore takes them from there",
    )
    restore_parser = commands.add_parser("restore", help="copy carried runs back into a pipeline output")
    restore_parser.add_argument("carried", help="a folder `save` made, e.g. experiments/carry/carracing-recipe-4m")
    restore_parser.add_argument("--out", required=True, help="the pipeline output to restore them into")
    args = parser.parse_args(argv)
    try:
        if args.command == "save":
            print(f"saved to {save(args.out, args.to, args.records)}")
        else:
            restored = restore(args.carried, args.out)
            print(f"restored {', '.join(restored) or 'nothing (every run here is as far along)'} into {args.out}")
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"{parser.prog} {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
