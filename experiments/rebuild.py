"""``python -m experiments.rebuild [NAME ...]``: write every committed report again from its records.

A report is a folder ``experiments/reports/<name>/``: its ``README.md``, its PNGs and its
``records/`` (configs, summaries, per-episode returns; no weights). Each folder whose records say
which writer made them is written again by that writer, from the records alone:
``records/pipeline.json`` by :mod:`experiments.pipeline.report`, ``records/study.json`` by
:mod:`experiments.studies.recipe_study`, ``records/campaign.json`` by :mod:`experiments.studies.faults`, and
``study.json`` (the Atari 100k study, a pipeline report per game below it) by :mod:`experiments.atari.report`.
The writer replaces the generated part of ``README.md`` (the prose written by hand around it is
kept) and draws the figures again. ``--into DIR`` writes
the reports to ``DIR/<name>/`` instead and leaves the committed ones as they are, to compare the two.

A report without such records is named as one and left as it is: its runs are gone (it says so
at its top), or, like the benchmarks, it holds tables and no figures. Run it from the
repository root: the reports name files by paths relative to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.atari.report import STUDY_FILE as ATARI_STUDY_FILE
from experiments.atari.report import rebuild_study
from experiments.pipeline.records import PIPELINE_FILE
from experiments.pipeline.report import RECORDS_DIR, REPORT_FILE, write_report
from experiments.studies.faults.report import CAMPAIGN_FILE
from experiments.studies.faults.report import write_report as write_fault_report
from experiments.studies.recipe_study import STUDY_FILE, write_report_from_records

REPORTS_DIR = Path("experiments/reports")


def rebuild(report: Path, into: Path | None = None) -> Path | None:
    """Write the report folder ``report`` again from its records, to ``into/<name>/`` (default: in place); returns the
    README written, or None when the folder keeps no records a writer reads."""
    records = report / RECORDS_DIR
    report_dir = report.parent if into is None else into
    if (records / PIPELINE_FILE).is_file():
        return write_report(records, name=report.name, report_dir=report_dir)
    if (records / STUDY_FILE).is_file():
        return write_report_from_records(records, report_dir / report.name)
    if (records / CAMPAIGN_FILE).is_file():
        return write_fault_report(report, into=report_dir / report.name)
    if (report / ATARI_STUDY_FILE).is_file():
        return rebuild_study(report, report_dir)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.rebuild", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="report folders to write again (default: every one)")
    parser.add_argument("--reports-dir", type=Path, default=REPORTS_DIR, help="where the report folders are")
    parser.add_argument("--into", type=Path, help="write the reports to INTO/<name>/ instead of in place")
    args = parser.parse_args(argv)
    folders = [args.reports_dir / name for name in args.names] or sorted(
        path.parent for path in args.reports_dir.glob(f"*/{REPORT_FILE}")
    )
    missing = [str(folder) for folder in folders if not (folder / REPORT_FILE).is_file()]
    if missing:
        parser.error(f"no report {REPORT_FILE} in {', '.join(missing)}")
    for folder in folders:
        written = rebuild(folder, args.into)
        print(f"wrote {written}" if written else f"{folder}: no records a writer reads, left as it is (see its top)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
