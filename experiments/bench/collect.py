"""Collection throughput on CarRacing-v3 against plain ``env.step`` of a vector env, same run.

For 1 and 2 workers: (a) baseline, a Gymnasium ``AsyncVectorEnv`` of the same preset env
(zoom-in skip, same episode length) stepped with random actions, nothing stored; (b)
``collect_rollouts`` end to end (worker start, preprocessing to 64x64, shard writing,
checksums). Both count base-env frames (the 50 skipped zoom-in frames per episode
included), so the ratio is the collector's overhead. The two sides alternate for ``REPEATS``
rounds (a collection, then the baseline for as long as it took); each figure is the median of
the rounds, shown with their range, and the ratio is the ratio of medians.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs.collect import CollectConfig, collect_rollouts
from envs.factory import make_env_fn
from experiments.bench.stats import median_range
from experiments.pipeline.machine import describe_machine, write_section

ENV_ID = "CarRacing-v3"
MAX_STEPS = 200
EPISODES_PER_WORKER = 3
REPEATS = 3
"""Rounds per worker count, each one collection and one baseline run."""


def baseline_frames_per_second(n_envs: int, seconds: float) -> float:
    """Base-env frames/s of an AsyncVectorEnv stepping the preset env with random actions."""
    config = CollectConfig(ENV_ID, out=Path("unused")).env_config
    config = config.replace(max_episode_steps=config.skip_start_frames + MAX_STEPS)
    venv = gym.vector.AsyncVectorEnv([make_env_fn(config)] * n_envs)
    try:
        venv.reset(seed=0)
        venv.action_space.seed(0)
        frames, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            *_, infos = venv.step(venv.action_space.sample())
            frames += int(np.sum(np.where(infos["_frames"], infos["frames"], 0)))
        return frames / (time.perf_counter() - start)
    finally:
        venv.close()


def table_row(workers: int, base: list[float], coll: list[float], stored: list[float], bytes_per_frame: float) -> str:
    """One row of the section's table from each round's figures, in round order (``base[i]`` and ``coll[i]`` ran in
    round ``i``)."""
    per_round = " / ".join(f"{c / b:.2f}" for c, b in zip(coll, base, strict=True))
    ratio = statistics.median(coll) / statistics.median(base)
    return (
        f"| {workers} | {median_range(base)} | {median_range(coll)} | {median_range(stored)} | {ratio:.2f} | "
        f"{per_round} | {bytes_per_frame:,.0f} |"
    )


def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = CollectConfig(ENV_ID, out=Path(tmp) / "warm", episodes=1, n_envs=1, max_steps=2, progress=False)
        collect_rollouts(warm)  # starts the worker fork server once, as any long run would have
        for n in (1, 2):
            base, coll, stored = [], [], []
            for rep in range(REPEATS):  # one run of each side per round: a slow spell of the machine hits both
                cfg = CollectConfig(ENV_ID, out=Path(tmp) / f"n{n}r{rep}", episodes=EPISODES_PER_WORKER * n,
                                    n_envs=n, max_steps=MAX_STEPS, progress=False)  # fmt: skip
                summary = collect_rollouts(cfg)
                coll.append(summary.env_frames / summary.seconds)
                stored.append(summary.frames_per_second)
                base.append(baseline_frames_per_second(n, seconds=summary.seconds))
            rows.append(table_row(n, base, coll, stored, summary.bytes_per_frame))
    section = "\n".join(
        [
            "## collect",
            "",
            f"Collection of {ENV_ID} (random policy, episodes of {MAX_STEPS} steps after the 50-frame zoom-in, "
            f"{EPISODES_PER_WORKER} episodes per worker, 64x64 RGB frames) against the baseline: an "
            "`AsyncVectorEnv` of the same preset env with the same episode length, stepped with random "
            "actions for as long as the collection took, nothing stored. Throughputs in base-env frames/s "
            "(zoom-in frames included); collection is timed end to end (worker start, preprocessing, "
            "shard writing, SHA-256).",
            "",
            f"Machine: {describe_machine()}.",
            "",
            f"Each row: {REPEATS} rounds, each one collection and then one baseline run; throughputs are the "
            f"median (min-max) of the {REPEATS} runs, ratio is the ratio of medians (collect env frames/s over "
            "baseline), ratio per round that of each round's pair, in round order.",
            "",
            "| workers | baseline env frames/s | collect env frames/s | collect stored frames/s | ratio | "
            "ratio per round | bytes/frame on disk |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    return write_section("collect", section)


if __name__ == "__main__":
    print(run())
