"""End to end on the toy env: collect -> train VAE -> train PPO on latents -> evaluate against random.

Settings (chosen so the whole chain runs in a few minutes on 2 CPU cores):

- collection: 300 random-policy episodes of at most 20 steps (300 target positions,
  ~6,300 frames) at 16x16 RGB, where DotTarget's 16 px squares are 4 px wide;
- VAE: z=8, width 0.5, beta 0.01, batch 32, lr 1e-3, a fixed number of steps; a small
  beta lets the latents carry the squares' positions before the KL term can close them;
- PPO: the shipped DotTarget preset (VecNormalize on), a shortened budget;
- evaluation: the agent (deterministic) and a uniform-random policy on the same
  ``EVAL_EPISODES`` episode starts (the run's evaluation seed, disjoint from training).

The margin: on DotTarget a random policy earns about -1 per episode (-0.01 per step over
100 steps, distance changes averaging out) with a spread of a few tenths, while reaching
the target earns +1 plus the distance covered. ``MARGIN`` asks the agent's mean return
to beat random's by more than 1.0: well over 5 standard errors of random's mean over
``EVAL_EPISODES`` episodes, and only reachable by an agent that reaches the target in a
good share of the episodes.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.train import AgentConfig, train_agent
from envs.collect import CollectConfig, collect_rollouts
from worldmodel.train import TrainVAEConfig, train_vae

TOY = "worldmodel/DotTarget-v0"
EVAL_EPISODES = 30
MARGIN = 1.0
VAE_STEPS = 5000


@pytest.fixture
def one_torch_thread():
    """Small models on a shared 2-core machine run fastest (and steadiest) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_agent_on_latents_beats_random(tmp_path, one_torch_thread):
    timings = {}
    start = time.monotonic()
    collect_rollouts(
        CollectConfig(TOY, out=tmp_path / "data", episodes=300, max_steps=20, size=(16, 16), n_envs=2, progress=False)
    )
    timings["collect"] = time.monotonic() - start
    vae = train_vae(
        TrainVAEConfig(
            str(tmp_path / "data"),
            out=str(tmp_path / "vae"),
            steps=VAE_STEPS,
            batch_size=16,
            lr=2e-3,
            warmup_steps=50,
            min_lr_fraction=0.5,
            beta=0.01,
            latent_dim=8,
            width_multiplier=0.5,
            patience=0,
            device="cpu",
            precision="fp32",
            channels_last=False,
            threads=1,
            figures=False,
            tensorboard=False,
            progress=False,
        )
    )
    timings["vae"] = time.monotonic() - start - timings["collect"]
    summary = json.loads((tmp_path / "vae" / "summary.json").read_text())
    r2 = summary["linear_probe_r2"]  # agent x, agent y, target x, target y
    run_dir = train_agent(
        AgentConfig(
            TOY,
            vae=str(vae),
            timesteps=20_000,
            out=str(tmp_path / "agent"),
            device="cpu",
            eval_freq=0,
            checkpoint_freq=10**9,
            progress_bar=False,
            tensorboard=False,
        )
    )
    timings["agent"] = time.monotonic() - start - timings["collect"] - timings["vae"]
    results = evaluate_agent(EvaluateConfig(str(run_dir), episodes=EVAL_EPISODES, random_baseline=True, device="cpu"))
    timings["total"] = time.monotonic() - start
    agent, rand = results["returns"], results["random"]["returns"]
    report = (
        f"agent {np.mean(agent):.2f} ± {np.std(agent):.2f}, random {np.mean(rand):.2f} ± {np.std(rand):.2f} "
        f"over {EVAL_EPISODES} episodes from seed {results['seed']}; probe R^2 {np.round(r2, 2).tolist()}; "
        f"seconds { ({k: round(v, 1) for k, v in timings.items()}) }"
    )
    print(report)
    assert np.mean(agent) > np.mean(rand) + MARGIN, report
