"""Cost of the memory model: ``VecMemoryObservation`` against ``VecLatentObservation`` alone, and training speed.

The sub-envs are a stub that returns one fixed 64x64x3 frame per step at no cost
(``DummyVecEnv``), so the figures are the wrappers' own: one batched encode per step, plus
for the memory wrapper one batched LSTM step. World Models sizes: VAE 64x64x3 with z=32,
LSTM 256 units, 5 mixtures, 3 continuous actions (CarRacing); untrained weights (speed does
not depend on them). Variants run in interleaved rounds; figures are medians. Then
``train_memory`` on synthetic latents of the same sizes (64 episodes of 300 steps, batch 16,
32-step windows, one epoch): env steps/s through the whole training loop.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from envs.latent.sb3_vec_env import VecLatentObservation
from envs.latent.spec import LatentSpec
from envs.memory.sb3_vec_env import VecMemoryObservation
from experiments.bench.latent_wrapper import table, with_threads
from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.frames import FrameSpec
from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
from worldmodel.memory.sequences import LatentEpisode, write_latents
from worldmodel.memory.train import TrainMemoryConfig, train_memory
from worldmodel.vae.checkpoint import file_sha256, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig

ENV_COUNTS = (1, 8, 64)
ROUNDS = 3
STEP_SECONDS = 1.0
ACTION_DIM = 3
TRAIN_EPISODES, TRAIN_STEPS = 64, 300


class StubFrameEnv(gym.Env):
    """Returns the same random 64x64x3 frame every step and never ends: costs nothing to step."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

    def __init__(self) -> None:
        self.frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.frame, {}

    def step(self, action):
        return self.frame, 0.0, False, False, {}


def seconds_per_step(venv: VecEnv, steps: int) -> float:
    actions = np.zeros((venv.num_envs, ACTION_DIM), np.float32)
    start = time.perf_counter()
    for _ in range(steps):
        venv.step(actions)
    return (time.perf_counter() - start) / steps


def wrapper_rows(vae: Path, memory: Path, device: str, threads: int | None) -> list[str]:
    rows = []
    spec = LatentSpec(vae, device=device)
    for n in ENV_COUNTS:
        variants = {
            "latent": VecLatentObservation(DummyVecEnv([StubFrameEnv] * n), spec),
            "memory": VecMemoryObservation(DummyVecEnv([StubFrameEnv] * n), spec, memory),
        }
        for venv in variants.values():
            venv.reset()
            with_threads(threads, lambda v=venv: seconds_per_step(v, 3))
        probe = with_threads(threads, lambda v=variants["latent"]: seconds_per_step(v, 3))
        steps = max(5, round(STEP_SECONDS / probe))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, venv in variants.items():
                times[name].append(with_threads(threads, lambda v=venv, s=steps: seconds_per_step(v, s)))
        latent, memory_t = statistics.median(times["latent"]), statistics.median(times["memory"])
        rows.append(f"| {n} | {steps} x {ROUNDS} | {latent * 1e3:.2f} | {memory_t * 1e3:.2f} | "
                    f"+{(memory_t - latent) * 1e3:.2f} ms (+{(memory_t / latent - 1) * 100:.0f}%) |")  # fmt: skip
    return rows


def training_rate(tmp: Path, vae: Path, device: str) -> float:
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(TRAIN_EPISODES):
        mu = rng.normal(size=(TRAIN_STEPS + 1, 32)).astype(np.float32)
        ends = np.zeros(TRAIN_STEPS, bool)
        actions = rng.uniform(-1, 1, (TRAIN_STEPS, ACTION_DIM)).astype(np.float32)
        episodes.append(LatentEpisode(mu, np.zeros_like(mu), actions, np.zeros(TRAIN_STEPS, np.float32), ends, ends))
    latents = write_latents(tmp / f"latents-{device}", episodes, vae_sha256=file_sha256(vae), env_id="Bench")
    config = TrainMemoryConfig(None, vae=str(vae), out=str(tmp / f"run-{device}"), latents=str(latents.path),
                               epochs=1, device=device, tensorboard=False, progress=False)  # fmt: skip
    train_memory(config)
    return json.loads((tmp / f"run-{device}" / "summary.json").read_text())["train_env_steps_per_s"]


def run() -> str:
    start = time.perf_counter()
    machine = describe_machine()
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        vae, memory = tmp / "vae.safetensors", tmp / "memory.safetensors"
        save_vae(vae, ConvVAE(VAEConfig()), FrameSpec())
        save_memory(memory, MDNRNN(MemoryConfig(latent_dim=32, action_dim=ACTION_DIM)), vae_sha256=file_sha256(vae))
        for device in devices:
            threads = 1 if device == "cpu" else None
            header = ["envs", "steps x rounds", "latent ms/step", "memory ms/step", "memory adds"]
            lines += ["", f"On {device}{' (1 torch thread)' if threads else ''}:", "",
                      *table(header, wrapper_rows(vae, memory, device, threads))]  # fmt: skip
        rates = {device: training_rate(tmp, vae, device) for device in devices}
    section = "\n".join(
        [
            "## memory",
            "",
            "Seconds per vector step of `VecLatentObservation` and `VecMemoryObservation` over the same "
            "free stub sub-envs (`DummyVecEnv`): what the memory model's one batched LSTM step per env step "
            "adds to the encoder pass. VAE 64x64x3, z=32; LSTM 256 units, 5 mixtures, 3 actions; untrained "
            f"weights. Medians over {ROUNDS} interleaved rounds.",
            "",
            f"Machine: {machine}.",
            *lines,
            "",
            f"`train_memory` on synthetic latents ({TRAIN_EPISODES} episodes of {TRAIN_STEPS} steps, z=32, "
            "hidden 256, batch 16 episodes, 32-step windows, one epoch, fp32): "
            + ", ".join(f"{rate:,.0f} env steps/s on {device}" for device, rate in rates.items())
            + f" (about {rates['cpu'] / 32:,.0f} 32-step sequences/s on the CPU).",
            "",
            f"Benchmark wall time: {time.perf_counter() - start:.0f} s.",
            "",
        ]
    )
    return write_section("memory", section)


if __name__ == "__main__":
    print(run())
