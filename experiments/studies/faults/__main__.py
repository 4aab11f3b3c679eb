"""``python -m experiments.studies.faults``: run the fault campaign and write its report (see the package)."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.studies.faults import __doc__ as DOC
from experiments.studies.faults.commands import COMMANDS, FAST, Budget
from experiments.studies.faults.corrupt import FILE_KINDS
from experiments.studies.faults.report import run_campaign, write_report
from experiments.studies.faults.running import run_in_process, run_subprocess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.faults", description=DOC.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/faults"), help="where the runs go")
    parser.add_argument("--report", type=Path, default=Path("experiments/reports/faults"), help="the report folder")
    parser.add_argument("--kills", type=int, default=5, help="kill moments per command")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument(
        "--commands", nargs="*", choices=list(COMMANDS), help="only these commands (default: all; none without a name)"
    )
    parser.add_argument(
        "--file-kinds",
        nargs="*",
        choices=list(FILE_KINDS),
        help="only these file kinds (default: all; none without a name)",
    )
    parser.add_argument("--fast", action="store_true", help="the test suite's smaller budgets")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="references, runs after a fault and readers of damaged files in processes of their own too "
        "(slower: each pays the imports)",
    )
    parser.add_argument("--rebuild", action="store_true", help="only write the report again from its records")
    args = parser.parse_args(argv)
    if not args.rebuild:
        run_campaign(
            args.out,
            args.report,
            kills=args.kills,
            seed=args.seed,
            budget=FAST if args.fast else Budget(),
            runner=run_subprocess if args.isolated else run_in_process,
            commands=args.commands,
            file_kinds=args.file_kinds,
        )
    print(f"wrote {write_report(args.report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
