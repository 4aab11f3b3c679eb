"""What a CarRacing agent's actions look like: the policy's mode against the action it executes.

A Gaussian PPO policy whose mean gas sits at or below 0 still drives when its actions are
sampled, because clipping noise to gas's [0, 1] leaves a positive average; act on the mean
and the car stalls. This script measures that on the states the agent visits with sampled
actions (EnvPool, a few tracks): per action dimension, the mean deterministic action and the
mean sampled action (both as executed: clipped, or unscaled for squashed policies), and the
share of steps whose deterministic action sits at the lower bound (for gas: no gas at all)::

    python -m experiments.studies.action_stats runs/recipe/base runs/recipe/squash --episodes 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from agents.bundle import load_bundle
from agents.evaluate import policy_act
from agents.hyperparams import EVAL_SEED_OFFSET

EVAL_SEED = EVAL_SEED_OFFSET
"""Episode seeds of evaluation start here: the tracks no agent trains on (seed 0 + the offset)."""
CAR_DIMENSIONS = ("steer", "gas", "brake")
AT_BOUND = 0.01
"""A deterministic action within 1% of the range from its lower bound counts as at the bound (gas: none)."""


def action_stats(run_dir: str | Path, episodes: int, seed: int = EVAL_SEED, backend: str = "envpool") -> dict[str, Any]:
    """Sample ``episodes`` episodes on ``backend``; at each visited state, compare both actions.

    Works for every SB3 algorithm with ``Box`` actions; actions are drawn as ``worldmodel evaluate``
    draws them (:func:`agents.evaluate.policy_act`).
    """
    bundle = load_bundle(run_dir, backend=backend, seed=seed, device="cpu")
    venv = bundle.venv
    low, high = venv.action_space.low, venv.action_space.high
    act_deterministic, act_sampled = policy_act(bundle, deterministic=True), policy_act(bundle, deterministic=False)
    deterministic, sampled = [], []
    obs, episode_start, done_episodes = venv.reset(), np.ones(1, dtype=bool), 0
    while done_episodes < episodes:
        mode, action = act_deterministic(obs, episode_start), act_sampled(obs, episode_start)
        deterministic.append(mode[0])
        sampled.append(action[0])
        obs, _, episode_start, _ = venv.step(action)
        done_episodes += int(episode_start[0])
    mode_arr, sampled_arr = np.array(deterministic), np.array(sampled)
    names = CAR_DIMENSIONS if len(low) == len(CAR_DIMENSIONS) else tuple(str(i) for i in range(len(low)))

    def per_dimension(values: np.ndarray) -> dict[str, float]:
        return {name: round(float(v), 3) for name, v in zip(names, values, strict=True)}

    at_low = mode_arr <= low + AT_BOUND * (high - low)
    return {
        "run_dir": str(run_dir),
        "steps": len(mode_arr),
        "episodes": episodes,
        "deterministic_mean": per_dimension(mode_arr.mean(0)),
        "sampled_mean": per_dimension(sampled_arr.mean(0)),
        "deterministic_at_low": per_dimension(at_low.mean(0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="train-agent run directories (Box actions).")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="Also write the results here as JSON.")
    args = parser.parse_args(argv)
    results = [action_stats(run, args.episodes) for run in args.run_dirs]
    for result in results:
        print(json.dumps(result))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
