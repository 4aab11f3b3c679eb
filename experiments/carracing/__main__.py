"""``python -m experiments.carracing [--preset full] [--out DIR] [--stage KIND ...] [--jobs N]``: run the pipeline.

Resumable: run the same command again after an interruption and finished stages are
skipped, interrupted ones continue from their checkpoints.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from experiments.carracing.config import PRESETS
from experiments.pipeline.config import PipelineConfig
from experiments.pipeline.stages import RUNNERS, run_pipeline
from worldmodel.common.errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.carracing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full", help="budgets (default: full)")
    parser.add_argument("--out", help="output directory (default: the preset's, e.g. runs/carracing)")
    parser.add_argument("--stage", nargs="+", default=(), help=f"run only these stage kinds or names: {list(RUNNERS)}")
    parser.add_argument("--report-name", help="report name (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--jobs", type=int, help="agent trainings and evaluations run at once (default: 1)")
    parser.add_argument("--agent-env-frames", type=int, help="training budget per agent run, env frames")
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="train every agent from its first frame where the preset continues another pipeline's runs "
        "(continue_from): the same training with constant schedules, for a machine that lacks those runs",
    )
    args = parser.parse_args(argv)
    flags = {
        "out": args.out,
        "report_name": args.report_name,
        "jobs": args.jobs,
        "agent_env_frames": args.agent_env_frames,
    }
    changes = {name: value for name, value in flags.items() if value is not None} | {"device": args.device}
    if args.from_scratch:
        changes["continue_from"] = None
    config = PipelineConfig.from_dict(PRESETS[args.preset].to_dict() | changes)  # flags by their flat names
    command = shlex.join(["python", "-m", "experiments.carracing", *(sys.argv[1:] if argv is None else argv)])
    try:
        run_pipeline(config, only=tuple(args.stage), command=command)
    except UserError as exc:
        print(f"experiments.carracing: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("experiments.carracing: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"results in {config.out} (stages.json, agents/*/evaluation.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
