"""experiments.studies.action_stats measures where a Gaussian policy's mode lies against the actions it executes."""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import PPO

from agents.bundle import VAE_FILE, save_bundle
from agents.train import AgentConfig, resolve, write_run_config
from agents.vec_env import build_vec_env
from experiments.studies.action_stats import action_stats

TOY = "worldmodel/DotTargetContinuous-v0"


@pytest.fixture(scope="module")
def stalled_agent(tmp_path_factory, toy_vae_path):
    """A PPO bundle whose mean action for dimension 0 is pushed far below the bound, with wide noise."""
    run_dir = tmp_path_factory.mktemp("agent")
    config = AgentConfig(TOY, vae=toy_vae_path, out=str(run_dir), n_envs=1, normalize=False)
    spec, hp, stack = resolve(config)
    write_run_config(run_dir, config, spec, hp, stack)
    venv = build_vec_env(stack, n_envs=1, seed=0, vae=run_dir / VAE_FILE, device="cpu")
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0, device="cpu", policy_kwargs={"log_std_init": 1.0})
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.tensor([-1.5, 0.0]))
    save_bundle(run_dir, model, venv)
    venv.close()
    return run_dir


def test_deterministic_action_at_the_bound_while_sampled_actions_are_not(stalled_agent) -> None:
    stats = action_stats(stalled_agent, episodes=1, seed=0, backend="gymnasium")
    assert stats["steps"] > 0
    assert stats["deterministic_mean"] == {"0": -1.0, "1": 0.0}  # the mode -1.5, clipped
    assert stats["deterministic_at_low"] == {"0": 1.0, "1": 0.0}
    # std e^1: clipped samples of N(-1.5, 2.7) average well above -1, the bound the mode sits under
    assert -1.0 < stats["sampled_mean"]["0"] < -0.2
    assert -0.5 < stats["sampled_mean"]["1"] < 0.5
