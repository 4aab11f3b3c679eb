"""``python -m experiments.learning_check [--out DIR]`` (``make learning-check``, ~30 min on 2 cores).

Slow learning check: latent PPO on CarRacing-v3, trained for a fixed budget
(:data:`CHECK`), must beat a uniform-random policy on the same fixed evaluation tracks
by :data:`MARGIN` return. Exits 0 when it does, 1 when not. Resumable like the pipeline.

>>> CHECK.random_baseline, CHECK.eval_seed, MARGIN
(True, 1000000, 100.0)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from experiments.demo import DEMO
from experiments.pipeline.records import EVALUATION_FILE
from experiments.pipeline.stages import StageError, plan, run_pipeline

MARGIN = 100.0
"""Required lead of the trained agent's mean return over the random policy's (random scores about -50 to -90)."""
CHECK = dataclasses.replace(
    DEMO,
    out="runs/learning_check",
    collect_episodes=32,
    collect_max_steps=300,
    agent_env_frames=100_000,
    train_eval_freq=25_000,
    eval_episodes=5,
    video=False,
    random_baseline=True,
    report_name=None,
)
"""Demo-sized data and VAE; 100k env frames of PPO; 5 fixed tracks."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.learning_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=CHECK.out, help=f"output directory (default: {CHECK.out})")
    config = dataclasses.replace(CHECK, out=parser.parse_args(argv).out)
    try:
        run_pipeline(config)
    except StageError as exc:
        print(f"learning check: {exc}", file=sys.stderr)
        return 1
    stage = next(s for s in plan(config) if s.kind == "evaluate")
    result = json.loads((stage.run_dir(config) / EVALUATION_FILE).read_text())
    agent, random = result["mean_return"], result["random"]["mean_return"]
    passed = agent > random + MARGIN
    print(
        f"learning check {'PASSED' if passed else 'FAILED'}: latent PPO {agent:.1f} vs random {random:.1f} "
        f"on {result['episodes']} tracks (needs a lead of {MARGIN:.0f}) after {config.agent_env_frames:,} env frames"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
