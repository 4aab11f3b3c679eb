"""What a CarRacing agent's actions look like: the policy's mode against the action it executes.

A Gaussian PPO policy whose mean gas sits at or below 0 still drives when its actions are
sampled, because clipping noise to gas's [0, 1] leaves a positive average; act on the mean
and the car stalls. This script measures that on the states the agent visits with sampled
actions (EnvPool, a few tracks): per action dimension, the mean of the policy's mode
(unclipped, in action units), the mean of the executed sampled action (clipped), and the
share of steps whose mode lies outside the bounds::

    python -m experiments.action_stats runs/recipe/base runs/recipe/squash --episodes 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.bundle import load_bundle

EVAL_SEED = 1_000_000
CAR_DIMENSIONS = ("steer", "gas", "brake")


def action_stats(run_dir: str | Path, episodes: int, seed: int = EVAL_SEED, backend: str = "envpool") -> dict[str, Any]:
    """Sample ``episodes`` episodes on ``backend`` and compare the policy's mode with the executed action."""
    bundle = load_bundle(run_dir, backend=backend, seed=seed, device="cpu")
    policy, venv = bundle.model.policy, bundle.venv
    low, high = venv.action_space.low, venv.action_space.high
    modes, executed = [], []
    obs, done_episodes = venv.reset(), 0
    while done_episodes < episodes:
        with torch.no_grad():
            mode = policy.get_distribution(policy.obs_to_tensor(obs)[0]).mode().cpu().numpy()
        if policy.squash_output:  # tanh-squashed policies act in [-1, 1]
            mode = policy.unscale_action(mode)
        action, _ = bundle.model.predict(obs, deterministic=False)  # what `evaluate --no-deterministic` runs
        modes.append(mode[0])
        executed.append(action[0])
        obs, _, dones, _ = venv.step(action)
        done_episodes += int(dones[0])
    modes_arr, executed_arr = np.array(modes), np.array(executed)

    names = CAR_DIMENSIONS if len(low) == len(CAR_DIMENSIONS) else tuple(str(i) for i in range(len(low)))

    def per_dimension(values: np.ndarray) -> dict[str, float]:
        return {name: round(float(v), 3) for name, v in zip(names, values, strict=True)}

    return {
        "run_dir": str(run_dir),
        "steps": len(modes),
        "episodes": episodes,
        "mode_mean": per_dimension(modes_arr.mean(0)),
        "executed_mean": per_dimension(executed_arr.mean(0)),
        "mode_below_low": per_dimension((modes_arr < low).mean(0)),
        "mode_above_high": per_dimension((modes_arr > high).mean(0)),
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
