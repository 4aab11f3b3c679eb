"""Cost of latent observations on CarRacing-v3: vector step time with and without the wrapper, same run.

For 1, 2, 4 and 8 envs in a ``SubprocVecEnv`` (each worker: ``gym.make("CarRacing-v3")``
+ ``PixelObservation`` + ``FrameSpecObservation``, so workers crop and resize to 64x64
and ship small frames), random actions, after a warm-up: seconds per vector step of the
bare ``SubprocVecEnv`` (baseline) and of ``VecLatentObservation`` over the same
``SubprocVecEnv``, with the encoder in fp32 (torch's default threads and one thread),
bf16 autocast and ``torch.compile``. Variants run in interleaved rounds (baseline, then
each variant, repeated) and each figure is the median over rounds, so drifts in the
load of the shared machine hit all variants alike. Then the encoder alone: frames/s at
batch 1, 8, 64, 256 (uint8 frames in, latents out), and on CUDA, when present, at
batch 64-1024 with the uint8 host-to-device transfer included.

The VAE is the World Models architecture (64x64x3, z=32) with untrained weights: speed
does not depend on the weights.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv

from envs.frame_wrapper import FrameSpecObservation
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.pixels import PixelObservation
from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import save_vae
from worldmodel.vae.encoder import LatentEncoder
from worldmodel.vae.model import ConvVAE, VAEConfig

ENV_ID = "CarRacing-v3"
FRAME_SPEC = FrameSpec(height=64, width=64, crop=(0, 0, 84, 96))  # drop the dashboard rows
ENV_COUNTS = (1, 2, 4, 8)
ROUNDS = 3
STEP_SECONDS = 1.5  # per variant per round
WARMUP_STEPS = 5
ENCODER_BATCHES = (1, 8, 64, 256)
GPU_BATCHES = (64, 256, 1024)


def make_worker_env(frame_spec: FrameSpec) -> gym.Env:
    """One CarRacing worker env emitting preprocessed 64x64 frames (one thread per worker)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    return FrameSpecObservation(PixelObservation(gym.make(ENV_ID)), frame_spec)


def seconds_per_step(venv: VecEnv, steps: int, rng: np.random.Generator) -> float:
    space = venv.action_space
    actions = rng.uniform(space.low, space.high, (steps, venv.num_envs, *space.shape)).astype(np.float32)
    start = time.perf_counter()
    for action in actions:
        venv.step(action)
    return (time.perf_counter() - start) / steps


def with_threads(threads: int | None, fn: Callable[[], float]) -> float:
    """Run ``fn`` with ``threads`` torch threads in this process (None: leave as is)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def wrapper_rows(encoders: dict[str, tuple[LatentEncoder, int | None]]) -> list[str]:
    rows = []
    rng = np.random.default_rng(0)
    for n in ENV_COUNTS:
        venv = SubprocVecEnv([functools.partial(make_worker_env, FRAME_SPEC)] * n)
        try:
            venv.seed(0)
            venv.reset()
            seconds_per_step(venv, WARMUP_STEPS, rng)
            wrapped = {name: VecLatentObservation(venv, encoder) for name, (encoder, _) in encoders.items()}
            for name, wrapper in wrapped.items():  # warm-up, compiles for this batch size
                wrapper.reset()
                with_threads(encoders[name][1], lambda w=wrapper: seconds_per_step(w, WARMUP_STEPS, rng))
            steps = max(5, round(STEP_SECONDS / seconds_per_step(venv, WARMUP_STEPS, rng)))
            times: dict[str, list[float]] = {"baseline": [], **{name: [] for name in wrapped}}
            for _ in range(ROUNDS):
                times["baseline"].append(seconds_per_step(venv, steps, rng))
                for name, wrapper in wrapped.items():
                    threads = encoders[name][1]
                    times[name].append(with_threads(threads, lambda w=wrapper, s=steps: seconds_per_step(w, s, rng)))
        finally:
            venv.close()
        base = statistics.median(times["baseline"])
        cells = [f"{base * 1e3:.1f}"]
        for name in wrapped:
            t = statistics.median(times[name])
            cells.append(f"{t * 1e3:.1f} (+{(t / base - 1) * 100:.0f}%)")
        rows.append(f"| {n} | {steps} x {ROUNDS} | " + " | ".join(cells) + " |")
    return rows


def frames_per_second(encoder: LatentEncoder, batch: int, threads: int | None) -> float:
    frames = np.random.default_rng(0).integers(0, 256, (batch, *FRAME_SPEC.shape), dtype=np.uint8)

    def measure() -> float:
        for _ in range(2):
            encoder.encode(frames)
        calls, start = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - start < 1.0:
            encoder.encode(frames)
            calls += 1
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        return calls * batch / (time.perf_counter() - start)

    return with_threads(threads, measure)


def encoder_rows(encoders: dict[str, tuple[LatentEncoder, int | None]], batches: tuple[int, ...]) -> list[str]:
    rows = []
    for batch in batches:
        fps = {name: frames_per_second(encoder, batch, threads) for name, (encoder, threads) in encoders.items()}
        base = next(iter(fps.values()))
        cells = [f"{value:,.0f} ({value / base:.2f}x)" for value in fps.values()]
        rows.append(f"| {batch} | " + " | ".join(cells) + " |")
    return rows


def table(header: list[str], rows: list[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows]


def run() -> str:
    start = time.perf_counter()
    machine = describe_machine()
    default_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vae.safetensors"
        save_vae(path, ConvVAE(VAEConfig()), FRAME_SPEC)
        cpu = {
            f"fp32, {default_threads} threads": (LatentEncoder(path, device="cpu"), None),
            "fp32, 1 thread": (LatentEncoder(path, device="cpu"), 1),
            "bf16, 1 thread": (LatentEncoder(path, device="cpu", precision="bf16"), 1),
            "compile fp32, 1 thread": (LatentEncoder(path, device="cpu", compile=True), 1),
        }
        step_rows = wrapper_rows(cpu)
        enc_rows = encoder_rows(cpu, ENCODER_BATCHES)
        gpu_lines: list[str] = []
        if torch.cuda.is_available():
            gpu = {
                "fp32": (LatentEncoder(path, device="cuda"), None),
                "bf16": (LatentEncoder(path, device="cuda", precision="bf16"), None),
            }
            gpu_lines = [
                "",
                f"Encoder alone on {torch.cuda.get_device_name(0)}, uint8 numpy frames in (host-to-device "
                "transfer included), float32 numpy latents out; frames/s (ratio to fp32):",
                "",
                *table(["batch", *gpu], encoder_rows(gpu, GPU_BATCHES)),
            ]
    names = list(cpu)
    section = "\n".join(
        [
            "## latent_wrapper",
            "",
            f"Seconds per vector step of {ENV_ID} in a `SubprocVecEnv` (one worker process per env; each "
            "worker runs `gym.make` + `PixelObservation` + `FrameSpecObservation` to 64x64, so frames are "
            "resized in the workers), random actions, after a warm-up: the bare `SubprocVecEnv` (baseline) and "
            "`VecLatentObservation` over the same `SubprocVecEnv`, one batched encode per step in the main "
            "process. World Models VAE (64x64x3, z=32, untrained weights). Figures are medians over "
            f"{ROUNDS} interleaved rounds; in brackets the time encoding adds to the baseline. Thread counts "
            "are torch's in the main process.",
            "",
            f"Machine: {machine}.",
            "",
            *table(["envs", "steps x rounds", "baseline ms/step", *[f"{name} ms/step" for name in names]], step_rows),
            "",
            "Encoder alone on the CPU, uint8 frames in, float32 latents out; frames/s (ratio to the first column):",
            "",
            *table(["batch", *names], enc_rows),
            *gpu_lines,
            "",
            f"Benchmark wall time: {time.perf_counter() - start:.0f} s.",
            "",
        ]
    )
    return write_section("latent_wrapper", section)


if __name__ == "__main__":
    print(run())
