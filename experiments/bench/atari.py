"""Latent PPO against pixel PPO on Atari, same run: training env frames/s on EnvPool (issue 36's goal: 2x).

Both arms train Pong with the PPO presets' ``atari`` entry (rl-zoo's PPO Atari recipe, 8 envs x 128 steps, frame
skip 4): latents through a VAE of the Atari frame spec (64x64 RGB, z = 32; untrained, since the encoder's cost does
not depend on its weights), pixels on NatureCNN over 4 stacked 84x84 grayscale frames. Each run is a fresh process
(:func:`experiments.bench.envpool.train_run`), timed end to end and in steady state; the arms alternate in
``REPEATS`` rounds, figures are medians (min-max) and ratios of medians.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from envs.config import ATARI_SPEC
from experiments.bench.envpool import REPEATS, interleaved_runs, ratio, train_rows
from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.vae import ConvVAE, VAEConfig
from worldmodel.vae.checkpoint import save_vae

GAME = "ALE/Pong-v5"
STEPS = 8192
"""Agent steps per run: 8 rollouts of 8 envs x 128 steps (32,768 env frames)."""
LATENT, PIXELS = "latent PPO (the atari preset), EnvPool", "pixel PPO (rl-zoo's Atari recipe), EnvPool"


def _vae(folder: Path) -> Path:
    """A VAE of the Atari frame spec with the training runs' default size, untrained."""
    path = folder / "vae.safetensors"
    config = VAEConfig(height=ATARI_SPEC.height, width=ATARI_SPEC.width, channels=ATARI_SPEC.channels, latent_dim=32)
    save_vae(path, ConvVAE(config), ATARI_SPEC)
    return path


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        vae = _vae(Path(tmp))
        common = {"backend": "envpool", "env_id": GAME, "timesteps": STEPS, "vae": vae}
        runs = interleaved_runs({LATENT: common, PIXELS: {**common, "pixels": True}}, REPEATS)
    section = [
        "## atari",
        "",
        f"Latent against pixel PPO on {GAME}, EnvPool, the PPO presets' `atari` entry "
        "(`python -m experiments.bench --only atari`).",
        "",
        f"Machine: {describe_machine()}.",
        "",
        f"{STEPS:,} agent steps each (frame skip 4; latents: an untrained VAE of the Atari frame spec, 64x64 RGB, "
        "z = 32, the latest 4 latents; pixels: NatureCNN on 4 stacked 84x84 grayscale frames), each run a fresh "
        f"process, the two arms alternating in {REPEATS} rounds; median (min-max), each run's env frames/s in round "
        "order, and steady state (from the first rollout after the first update):",
        "",
        "| run | env frames | wall s | env frames/s | env frames/s per round | steady env frames/s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
        *train_rows(runs),
        "",
        f"Latent against pixel PPO, steady state: {ratio(runs[LATENT], runs[PIXELS], 'steady_frames_per_s')}; "
        f"whole runs: {ratio(runs[LATENT], runs[PIXELS])} (issue 36's goal: 2x).",
        "",
    ]
    return write_section("atari", "\n".join(section))
