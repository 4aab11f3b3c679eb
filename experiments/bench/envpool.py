"""EnvPool against Gymnasium on CarRacing-v3, same run: raw env frames/s, agent training frames/s, a profile.

1. Raw env speed: the CarRacing-v3 preset (zoom-in skipped, 96x96 frames, action steer
   random / gas 0.5) stepped by Gymnasium envs in a ``SubprocVecEnv`` (the baseline) and by
   :class:`envs.envpool.vec_env.EnvPoolVecEnv`, at 2, 4 and 8 envs, EnvPool with 2 threads
   and with one thread per env. Base-env frames/s, the ratio of medians to the baseline at
   the same count, and that of each backend at its setting with the highest median.
2. Training speed: ``train_agent`` with the same recipe on both backends for a fixed number
   of agent steps (latent PPO with the shipped VAE; the rl-zoo pixel recipe on EnvPool; the
   latent TQC preset on EnvPool); env frames/s over the whole run (rollouts and updates), and
   in steady state: from the first rollout after the first gradient update to the end of
   ``learn`` (without set-up, TQC's learning-starts steps and the compilation of its update,
   each paid once in a run of hours); peak resident memory of the run (its process and its env
   workers). Both modes use their shipped PPO preset, each at frame
   skip 2, so equal agent steps are equal env frames. Latent runs encode in the precision
   ``train-agent --encoder-precision auto`` picks on this CPU (bf16 where it has native bf16),
   and once more in fp32 where that differs.
3. Where a latent PPO step on EnvPool spends its time (its median run): env stepping, VAE
   encoding, policy forward passes and rollout bookkeeping, gradient updates.

Every compared side, the Gymnasium baselines included, runs ``REPEATS`` times in rounds of one
run of each, so a slow spell of the shared machine falls on all of them; figures are the median
(min-max) of the runs, ratios are ratios of medians. Each training run is a fresh process, so
its peak memory is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import torch

from experiments.bench.stats import median_range
from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.common.device import default_precision

ENV_ID = "CarRacing-v3"
ENV_COUNTS = (2, 4, 8)
RAW_SECONDS = 8.0
VAE = Path(__file__).resolve().parents[1] / "pretrained" / "carracing" / "vae.safetensors"
TRAIN_STEPS = 8192
"""Agent steps per PPO training run: two rollouts of 8 envs x 512 steps, each followed by its update."""
TQC_STEPS = 10_240
"""Agent steps per TQC run: the preset's 5,000 learning-starts steps, then 6,550 gradient steps (enough for
``train-agent`` to compile the update, as it does in a full run)."""
REPEATS = 3
"""Runs of every raw-speed cell and every training mode (Gymnasium baselines included), in rounds of one run each."""
RAW_SIDES = ("Gymnasium", "EnvPool, 2 threads", "EnvPool, 1 thread per env")
"""The raw-speed columns; the first is the baseline."""


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


def raw_runs(repeats: int) -> dict[tuple[int, str], list[float]]:
    """Frames/s of every cell (env count, one of :data:`RAW_SIDES`), ``repeats`` times, in rounds of one run of
    each cell; run ``i`` of every cell ran in round ``i``."""
    runs: dict[tuple[int, str], list[float]] = {(n, side): [] for n in ENV_COUNTS for side in RAW_SIDES}
    for _ in range(repeats):
        for n in ENV_COUNTS:
            runs[n, RAW_SIDES[0]].append(raw_frames_per_second("gymnasium", n))
            runs[n, RAW_SIDES[1]].append(raw_frames_per_second("envpool", n, num_threads=2))
            runs[n, RAW_SIDES[2]].append(raw_frames_per_second("envpool", n, num_threads=n))
    return runs


def raw_lines(runs: dict[tuple[int, str], list[float]]) -> list[str]:
    """The raw-speed table and its headline from :func:`raw_runs`' figures."""
    median = {cell: statistics.median(fps) for cell, fps in runs.items()}
    rows = []
    for n in ENV_COUNTS:
        base = median[n, RAW_SIDES[0]]
        cells = [median_range(runs[n, RAW_SIDES[0]])]
        cells += [f"{median_range(runs[n, side])}, {median[n, side] / base:.1f}x" for side in RAW_SIDES[1:]]
        rows.append(f"| {n} | {' | '.join(cells)} |")
    gym = max((cell for cell in median if cell[1] == RAW_SIDES[0]), key=median.__getitem__)
    pool = max((cell for cell in median if cell[1] != RAW_SIDES[0]), key=median.__getitem__)
    return [
        f"| envs | {' | '.join(RAW_SIDES)} |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Each backend at its setting with the highest median, ratio of medians: {pool[1]}, {pool[0]} envs, "
        f"{median[pool]:,.0f} / Gymnasium, {gym[0]} envs, {median[gym]:,.0f} = **{median[pool] / median[gym]:.1f}x** "
        "(goal: 5x).",
    ]


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


class _Marks:
    """Wall time and agent steps at the start of every rollout, and when ``learn`` returns: the steady state of a run
    starts at the first rollout after its first gradient update."""

    def __init__(self) -> None:
        self.rollouts: list[tuple[float, int, int]] = []
        """(time, agent steps so far, gradient updates so far) at each rollout's start."""
        self.end: tuple[float, int] | None = None

    def wrap(self, rollout_classes: tuple[type, ...], learn_class: type) -> None:
        for cls in rollout_classes:
            inner = cls.collect_rollouts

            def collect(model, *args, inner=inner, **kwargs):
                self.rollouts.append((time.perf_counter(), model.num_timesteps, model._n_updates))
                return inner(model, *args, **kwargs)

            cls.collect_rollouts = collect
        learn = learn_class.learn

        def timed_learn(model, *args, **kwargs):
            result = learn(model, *args, **kwargs)
            self.end = (time.perf_counter(), model.num_timesteps)
            return result

        learn_class.learn = timed_learn

    def steady(self) -> tuple[float, int]:
        """Seconds and agent steps from the first rollout after the first gradient update to the end of ``learn``."""
        assert self.end is not None, "learn did not return"
        start, steps, _ = next(mark for mark in self.rollouts if mark[2] > 0)
        return self.end[0] - start, self.end[1] - steps


def _train(
    backend: str,
    pixels: bool,
    encoder_precision: str,
    out: str,
    profile: bool,
    algo: str,
    timesteps: int,
    env_id: str,
    vae: str,
    queue: Any,
) -> None:
    """One ``train_agent`` run in this (fresh) process; puts its figures on ``queue``."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from agents.algorithms import get_algorithm
    from agents.train import AgentConfig, train_agent
    from envs.envpool.vec_env import EnvPoolVecEnv
    from envs.latent.sb3_vec_env import VecLatentObservation

    torch.set_num_threads(1)
    marks = _Marks()  # before the profile's wraps, which then call through it
    marks.wrap((OnPolicyAlgorithm, OffPolicyAlgorithm), get_algorithm(algo).load_class())
    timer = _Timer()
    if profile:  # time the layers of the stack and the two halves of PPO's loop
        timer.wrap(EnvPoolVecEnv, "step_wait", "env")
        timer.wrap(VecLatentObservation, "step_wait", "env + encoding")
        timer.wrap(PPO, "collect_rollouts", "rollout")
        timer.wrap(PPO, "train", "gradient updates")
    config = AgentConfig(
        env_id, vae=None if pixels else vae, algo=algo, pixels=pixels, backend=backend, timesteps=timesteps,
        out=out, eval_freq=0, checkpoint_freq=10**9, progress_bar=False, tensorboard=False, device="cpu",
        subproc=backend == "gymnasium", encoder_precision=encoder_precision,
    )  # fmt: skip
    start = time.perf_counter()
    run_dir = train_agent(config)
    wall = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    steady_s, steady_steps = marks.steady()
    frames_per_step = summary["env_frames"] / summary["agent_steps"]
    queue.put({
        "wall_s": wall, "env_frames": summary["env_frames"], "peak_rss_mib": _peak_rss_mib(),
        "steady_frames_per_s": steady_steps * frames_per_step / steady_s, **timer.seconds,
    })  # fmt: skip


def train_run(
    backend: str,
    *,
    pixels: bool = False,
    encoder_precision: str = "auto",
    profile: bool = False,
    algo: str = "ppo",
    timesteps: int = TRAIN_STEPS,
    env_id: str = ENV_ID,
    vae: str | Path = VAE,
) -> dict[str, Any]:
    """Figures of one training run with the shipped preset of ``algo`` on ``env_id`` (latents: ``vae``), made in a
    fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        run = str(Path(tmp) / "run")
        args = (backend, pixels, encoder_precision, run, profile, algo, timesteps, env_id, str(vae), queue)
        process = ctx.Process(target=_train, args=args)
        process.start()
        while True:  # a run that dies puts nothing on the queue
            try:
                result = queue.get(timeout=5)
                break
            except Empty:
                if not process.is_alive():
                    raise RuntimeError(f"the training run ({args[:-1]}) died, exit code {process.exitcode}") from None
        process.join()
    result["frames_per_s"] = result["env_frames"] / result["wall_s"]
    return result


def interleaved_runs(modes: dict[str, dict[str, Any]], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Every mode's ``repeats`` training runs (``train_run`` keywords per mode), in rounds of one run of each mode so
    that a slow spell of the machine falls on all of them; run ``i`` of every mode ran in round ``i``."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, kwargs in modes.items():
            runs[name].append(train_run(**kwargs))
    return runs


def _fps(runs: list[dict[str, Any]], key: str = "frames_per_s") -> list[float]:
    return [r[key] for r in runs]


def ratio(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str = "frames_per_s") -> str:
    """Ratio of median env frames/s (``key``: whole runs, or ``steady_frames_per_s``) of two modes' runs, and the
    ratio in each round."""
    x, y = _fps(a, key), _fps(b, key)
    per_round = " / ".join(f"{p / q:.2f}" for p, q in zip(x, y, strict=True))
    return f"**{statistics.median(x) / statistics.median(y):.2f}x**, per round {per_round}"


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run at the median env frames/s (for an even count, the faster of the middle two)."""
    return sorted(runs, key=lambda r: r["frames_per_s"])[len(runs) // 2]


def train_rows(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One table row per mode: median (min-max) of its runs, and each run's env frames/s in round order."""
    rows = []
    for name, rs in runs.items():
        frames = ", ".join(str(f) for f in sorted({r["env_frames"] for r in rs}))
        each = ", ".join(f"{fps:,.0f}" for fps in _fps(rs))
        wall, rss = median_range([r["wall_s"] for r in rs], ".1f"), median_range([r["peak_rss_mib"] for r in rs])
        steady = median_range(_fps(rs, "steady_frames_per_s"))
        rows.append(f"| {name} | {frames} | {wall} | {median_range(_fps(rs))} | {each} | {steady} | {rss} |")
    return rows


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


TQC_MODE = "latent TQC (the CarRacing preset), EnvPool, encoder {auto}"


def training_modes(auto: str) -> dict[str, dict[str, Any]]:
    """The training runs compared, by name: ``train_run`` keywords; ``auto`` is the encoder precision that
    ``--encoder-precision auto`` picks on this CPU."""
    modes: dict[str, dict[str, Any]] = {
        f"latent PPO, Gymnasium (SubprocVecEnv), encoder {auto}": {"backend": "gymnasium"},
        f"latent PPO, EnvPool, encoder {auto}": {"backend": "envpool", "profile": True},
        "pixel PPO (rl-zoo CnnPolicy recipe), EnvPool": {"backend": "envpool", "pixels": True},
        TQC_MODE.format(auto=auto): {"backend": "envpool", "algo": "tqc", "timesteps": TQC_STEPS},
    }
    if auto != "fp32":  # the encoder as a CPU without native bf16 runs it
        modes["latent PPO, EnvPool, encoder fp32"] = {"backend": "envpool", "encoder_precision": "fp32"}
    return modes


def section(raw: dict[tuple[int, str], list[float]], train: dict[str, list[dict[str, Any]]], auto: str) -> str:
    """The markdown section from :func:`raw_runs`' and :func:`interleaved_runs`' figures (``train`` keyed as
    :func:`training_modes` names them)."""
    repeats = len(next(iter(train.values())))
    latent_gym, latent_pool, pixels_pool = (
        train[f"latent PPO, Gymnasium (SubprocVecEnv), encoder {auto}"],
        train[f"latent PPO, EnvPool, encoder {auto}"],
        train["pixel PPO (rl-zoo CnnPolicy recipe), EnvPool"],
    )
    fp32_note = ""
    if auto != "fp32":
        fp32_note = f"; with the encoder in fp32: {ratio(train['latent PPO, EnvPool, encoder fp32'], pixels_pool)}"
    return "\n".join(
        [
            "## envpool",
            "",
            f"EnvPool against Gymnasium on {ENV_ID} (`python -m experiments.bench --only envpool`).",
            "",
            f"Machine: {describe_machine()}.",
            "",
            f"Raw env frames/s (the preset: zoom-in skipped, 96x96 frames out, {RAW_SECONDS:g} s per run; "
            "Gymnasium envs in a `SubprocVecEnv`, one process each; `EnvPoolVecEnv` with 2 threads or one "
            f"per env). Every cell ran {len(next(iter(raw.values())))} times, in rounds of one run of each cell; "
            "median (min-max) of its runs, and the ratio of medians to Gymnasium at the same count:",
            "",
            *raw_lines(raw),
            "",
            f"Training, {TRAIN_STEPS} agent steps each with the shipped PPO presets (latents: the shipped VAE; 8 "
            "envs, frame skip 2, latent history 2 with the previous action, 256-step rollouts, torch on one thread, "
            "the encoder in the precision `--encoder-precision auto` picks on this CPU, and in fp32 if it differs. "
            "Pixels: rl-zoo's recipe, frame skip 2, 64x64 grayscale, 2 stacked frames; latent TQC: its CarRacing "
            f"preset for {TQC_STEPS:,} agent steps), each run a fresh process, timed end to end and in steady state "
            "(from the first rollout after the first gradient update to the end of training). Every mode, the "
            f"Gymnasium one included, ran {repeats} times, in rounds of one run of each mode in the order of the "
            "table; median (min-max) of its runs, and each run's env frames/s in round order:",
            "",
            "| run | env frames | wall s | env frames/s | env frames/s per round | steady env frames/s "
            "| peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
            *train_rows(train),
            "",
            "Ratios of median env frames/s (and of the two runs of each round): latent PPO, EnvPool against "
            f"Gymnasium: {ratio(latent_pool, latent_gym)} (goal: 5x). Latent against pixel PPO, both on EnvPool "
            f"with frame skip 2: {ratio(latent_pool, pixels_pool)}{fp32_note} (goal: 2x).",
            "",
            f"Latent TQC (the CarRacing preset: 2 envs, 10 gradient steps every 4 steps, its update compiled; "
            f"{TQC_STEPS:,} agent steps, the first 5,000 before learning starts) against pixel PPO, steady-state env "
            f"frames/s: {ratio(train[TQC_MODE.format(auto=auto)], pixels_pool, 'steady_frames_per_s')} (issue 35's "
            "goal: at least 1x, stretch 2x); whole runs: "
            f"{ratio(train[TQC_MODE.format(auto=auto)], pixels_pool)}.",
            "",
            f"Where the latent PPO run on EnvPool (encoder {auto}) spent its time, in its run with the median env "
            "frames/s:",
            "",
            "| part | seconds | share |",
            "|---|---|---|",
            *_profile_rows(median_run(latent_pool)),
            "",
        ]
    )


def run() -> str:
    auto = default_precision(torch.device("cpu"))  # the encoder precision train-agent picks on this CPU
    raw = raw_runs(REPEATS)
    train = interleaved_runs(training_modes(auto), REPEATS)
    return write_section("envpool", section(raw, train, auto))
