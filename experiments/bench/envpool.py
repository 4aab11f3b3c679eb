"""EnvPool against Gymnasium on CarRacing-v3, same run: raw env frames/s, agent training frames/s, a profile.

1. Raw env speed: the CarRacing-v3 preset (zoom-in skipped, 96x96 frames, action steer
   random / gas 0.5) stepped by Gymnasium envs in a ``SubprocVecEnv`` (the baseline) and by
   :class:`envs.envpool.vec_env.EnvPoolVecEnv`, at 2, 4 and 8 envs, EnvPool with 2 threads
   and with one thread per env. Base-env frames/s, ratio to the baseline at the same count
   and best against best.
2. Training speed: ``train_agent`` with the same recipe on both backends for a fixed number
   of agent steps (latent PPO with the shipped VAE; the rl-zoo pixel recipe on EnvPool);
   env frames/s over the whole run (rollouts and updates), peak resident memory of the run
   (its process and its env workers). Both modes use their shipped PPO preset, each at frame
   skip 2, so equal agent steps are equal env frames. Latent runs encode in the precision
   ``train-agent --encoder-precision auto`` picks on this CPU (bf16 where it has native bf16),
   and once more in fp32 where that differs.
3. Where a latent PPO step on EnvPool spends its time: env stepping, VAE encoding, policy
   forward passes and rollout bookkeeping, gradient updates.

Each training run is a fresh process, so its peak memory is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.common.device import default_precision

ENV_ID = "CarRacing-v3"
ENV_COUNTS = (2, 4, 8)
RAW_SECONDS = 8.0
VAE = Path(__file__).resolve().parents[1] / "pretrained" / "carracing" / "vae.safetensors"
TRAIN_STEPS = 8192
"""Agent steps per training run: two PPO rollouts of 8 envs x 512 steps, each followed by its update."""
TRAIN_REPEATS = 2
"""Runs of each EnvPool training mode, interleaved; the fastest counts (other work on the machine only slows a run)."""


def _actions(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.uniform(-1, 1, n), np.full(n, 0.5), np.zeros(n)], axis=1).astype(np.float32)


def raw_frames_per_second(backend: str, n_envs: int, num_threads: int | None = None) -> float:
    """Base-env frames/s of ``n_envs`` preset CarRacing envs on ``backend``, 96x96 frames out."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from envs.config import env_preset
    from envs.envpool.vec_env import EnvPoolVecEnv
    from envs.factory import make_env_fn
    from worldmodel.frames import FrameSpec

    config = env_preset(ENV_ID).replace(backend=backend)
    if backend == "envpool":
        venv = EnvPoolVecEnv(config, n_envs, seed=0, frame_spec=FrameSpec(96, 96), num_threads=num_threads)
    else:
        venv = SubprocVecEnv([make_env_fn(config)] * n_envs)
    rng = np.random.default_rng(0)
    try:
        venv.seed(0)
        venv.reset()
        for _ in range(5):
            venv.step(_actions(rng, n_envs))
        frames, start = 0, time.perf_counter()
        while time.perf_counter() - start < RAW_SECONDS:
            *_, infos = venv.step(_actions(rng, n_envs))
            frames += sum(int(info.get("frames", 1)) for info in infos)
        return frames / (time.perf_counter() - start)
    finally:
        venv.close()


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


class _Timer:
    """Accumulates the wall time spent inside wrapped callables, by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, obj: Any, name: str, label: str) -> None:
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

        setattr(obj, name, timed)


def _train(backend: str, pixels: bool, encoder_precision: str, out: str, profile: bool, queue: Any) -> None:
    """One ``train_agent`` run in this (fresh) process; puts its figures on ``queue``."""
    import torch
    from stable_baselines3 import PPO

    from agents.train import AgentConfig, train_agent
    from envs.envpool.vec_env import EnvPoolVecEnv
    from envs.latent.sb3_vec_env import VecLatentObservation

    torch.set_num_threads(1)
    timer = _Timer()
    if profile:  # time the layers of the stack and the two halves of PPO's loop
        timer.wrap(EnvPoolVecEnv, "step_wait", "env")
        timer.wrap(VecLatentObservation, "step_wait", "env + encoding")
        timer.wrap(PPO, "collect_rollouts", "rollout")
        timer.wrap(PPO, "train", "gradient updates")
    config = AgentConfig(
        ENV_ID, vae=None if pixels else str(VAE), pixels=pixels, backend=backend, timesteps=TRAIN_STEPS,
        out=out, eval_freq=0, checkpoint_freq=10**9, progress_bar=False, tensorboard=False, device="cpu",
        subproc=backend == "gymnasium", encoder_precision=encoder_precision,
    )  # fmt: skip
    start = time.perf_counter()
    run_dir = train_agent(config)
    wall = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    queue.put({"wall_s": wall, "env_frames": summary["env_frames"], "peak_rss_mib": _peak_rss_mib(), **timer.seconds})


def train_run(
    backend: str, *, pixels: bool = False, encoder_precision: str = "auto", profile: bool = False
) -> dict[str, Any]:
    """Figures of one training run with the shipped preset, made in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        args = (backend, pixels, encoder_precision, str(Path(tmp) / "run"), profile, queue)
        process = ctx.Process(target=_train, args=args)
        process.start()
        result = queue.get()
        process.join()
    result["frames_per_s"] = result["env_frames"] / result["wall_s"]
    return result


def fastest_runs(modes: dict[str, dict[str, Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Each mode's fastest of ``repeats`` training runs (``train_run`` keywords per mode), the modes interleaved so
    that a slow spell of the machine falls on all of them; ``each_frames_per_s`` keeps every run's figure."""
    fastest: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for name, kwargs in modes.items():
            result = train_run("envpool", **kwargs)
            each = [*fastest.get(name, {}).get("each_frames_per_s", []), result["frames_per_s"]]
            if name not in fastest or result["frames_per_s"] > fastest[name]["frames_per_s"]:
                fastest[name] = result
            fastest[name]["each_frames_per_s"] = each
    return fastest


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return a["frames_per_s"] / b["frames_per_s"]


def _profile_rows(result: dict[str, Any]) -> list[str]:
    wall = result["wall_s"]
    env = result.get("env", 0.0)
    encoding = result.get("env + encoding", 0.0) - env
    policy = result.get("rollout", 0.0) - result.get("env + encoding", 0.0)
    updates = result.get("gradient updates", 0.0)
    other = wall - result.get("rollout", 0.0) - updates
    parts = {
        "env stepping (EnvPool, frame skip, preprocessing)": env,
        "VAE encoding (VecLatentObservation)": encoding,
        "policy forward passes and rollout buffer": policy,
        "gradient updates (PPO.train)": updates,
        "set-up, bundle, other": other,
    }
    return [f"| {name} | {seconds:.1f} | {100 * seconds / wall:.0f}% |" for name, seconds in parts.items()]


def run() -> str:
    raw_rows, best = [], {"gymnasium": 0.0, "envpool": 0.0}
    for n in ENV_COUNTS:
        gym_fps = raw_frames_per_second("gymnasium", n)
        pool2 = raw_frames_per_second("envpool", n, num_threads=2)
        pooln = raw_frames_per_second("envpool", n, num_threads=n)
        best["gymnasium"] = max(best["gymnasium"], gym_fps)
        best["envpool"] = max(best["envpool"], pool2, pooln)
        raw_rows.append(
            f"| {n} | {gym_fps:.0f} | {pool2:.0f} ({pool2 / gym_fps:.1f}x) | {pooln:.0f} ({pooln / gym_fps:.1f}x) |"
        )
    auto = default_precision(torch.device("cpu"))  # the encoder precision train-agent picks on this CPU
    latent_gym = train_run("gymnasium")
    latent_gym["each_frames_per_s"] = [latent_gym["frames_per_s"]]
    modes = {
        f"latent PPO, EnvPool, encoder {auto}": {"profile": True},
        "pixel PPO (rl-zoo CnnPolicy recipe), EnvPool": {"pixels": True},
    }
    if auto != "fp32":  # the encoder as a CPU without native bf16 runs it
        modes["latent PPO, EnvPool, encoder fp32"] = {"encoder_precision": "fp32"}
    runs = {f"latent PPO, Gymnasium (SubprocVecEnv), encoder {auto}": latent_gym, **fastest_runs(modes, TRAIN_REPEATS)}
    latent_pool, pixels_pool = (
        runs[f"latent PPO, EnvPool, encoder {auto}"],
        runs["pixel PPO (rl-zoo CnnPolicy recipe), EnvPool"],
    )
    fp32_note = ""
    if auto != "fp32":
        fp32_note = (
            f" (with the encoder in fp32: {_ratio(runs['latent PPO, EnvPool, encoder fp32'], pixels_pool):.1f}x)"
        )
    train_rows = [
        f"| {name} | {r['env_frames']} | {r['wall_s']:.1f} | {r['frames_per_s']:.0f} | "
        f"{', '.join(f'{fps:.0f}' for fps in r['each_frames_per_s'])} | {r['peak_rss_mib']:.0f} |"
        for name, r in runs.items()
    ]
    section = "\n".join(
        [
            "## envpool",
            "",
            f"EnvPool against Gymnasium on {ENV_ID} (`python -m experiments.bench --only envpool`).",
            "",
            f"Machine: {describe_machine()}.",
            "",
            f"Raw env frames/s (the preset: zoom-in skipped, 96x96 frames out, {RAW_SECONDS:g} s per cell; "
            "Gymnasium envs in a `SubprocVecEnv`, one process each; `EnvPoolVecEnv` with 2 threads or one "
            "per env; ratio to Gymnasium at the same count):",
            "",
            "| envs | Gymnasium | EnvPool, 2 threads | EnvPool, 1 thread per env |",
            "|---|---|---|---|",
            *raw_rows,
            "",
            f"Best against best: EnvPool {best['envpool']:.0f} / Gymnasium {best['gymnasium']:.0f} = "
            f"**{best['envpool'] / best['gymnasium']:.1f}x** (goal: 5x).",
            "",
            f"Training, {TRAIN_STEPS} agent steps each with the shipped PPO presets (latents: the shipped VAE; 8 "
            "envs, frame skip 2, latent history 2 with the previous action, 256-step rollouts, torch on one thread, "
            "the encoder in the precision `--encoder-precision auto` picks on this CPU, and in fp32 if it differs. "
            "Pixels: rl-zoo's recipe, frame skip 2, 64x64 grayscale, 2 stacked frames), each run a fresh process, "
            f"timed end to end; each EnvPool mode ran {TRAIN_REPEATS} times, interleaved, and its fastest run is "
            "shown (the Gymnasium run once):",
            "",
            "| run | env frames | wall s | env frames/s | each run's env frames/s | peak RSS MiB |",
            "|---|---|---|---|---|---|",
            *train_rows,
            "",
            f"Latent PPO, EnvPool against Gymnasium: **{_ratio(latent_pool, latent_gym):.1f}x** (goal: 5x). "
            f"Latent against pixel PPO, both on EnvPool with frame skip 2: **{_ratio(latent_pool, pixels_pool):.1f}x**"
            f"{fp32_note} (goal: 2x).",
            "",
            f"Where the latent PPO run on EnvPool (encoder {auto}) spent its time:",
            "",
            "| part | seconds | share |",
            "|---|---|---|",
            *_profile_rows(latent_pool),
            "",
        ]
    )
    return write_section("envpool", section)
