"""Agents on [z, h]: train-agent --memory, bundles that carry the memory model, collection with such an agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from stable_baselines3 import PPO
from test_agents_train import quick
from test_bundle_policy import replay_predictions

from agents.bundle import MEMORY_FILE, VAE_FILE, BundleError, load_bundle, save_bundle
from agents.bundle_policy import BundlePolicyFactory
from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.train import AgentConfig, resolve, train_agent, write_run_config
from agents.vec_env import StackConfig, build_vec_env
from envs.collect import CollectConfig, collect_rollouts
from envs.memory.sb3_vec_env import VecMemoryObservation
from worldmodel.data import FrameDataset
from worldmodel.frames import FrameSpec
from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
from worldmodel.vae.checkpoint import CheckpointError, file_sha256, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig

TOY = "worldmodel/DotTarget-v0"


def test_train_agent_with_memory_bundles_the_memory_model(tmp_path, toy_vae_path, toy_memory_path):
    run_dir = train_agent(quick(tmp_path, vae=toy_vae_path, memory=toy_memory_path, eval_freq=0))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["stack"]["memory"] and config["memory_sha256"] == file_sha256(toy_memory_path)
    assert json.loads((run_dir / "summary.json").read_text())["mode"] == "memory"
    bundle = load_bundle(run_dir, device="cpu")
    assert isinstance(bundle.venv.venv, VecMemoryObservation)  # under VecNormalize
    assert bundle.venv.observation_space.shape == (6 + 16,)
    bundle.venv.close()
    results = evaluate_agent(EvaluateConfig(str(run_dir), episodes=2, video=str(tmp_path / "a.mp4"), device="cpu"))
    assert results["mode"] == "memory" and (tmp_path / "a.mp4").stat().st_size > 0
    with open(run_dir / MEMORY_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"memory.safetensors was modified since training.*exact memory model"):
        load_bundle(run_dir, device="cpu")
    (run_dir / MEMORY_FILE).unlink()
    with pytest.raises(BundleError, match=r"missing memory.safetensors, the memory model the agent was trained with"):
        train_agent(quick(tmp_path, vae=toy_vae_path, memory=toy_memory_path, out=str(run_dir), resume=True))


def test_memory_of_another_vae_or_incompatible_options_are_refused(tmp_path, toy_vae_path):
    other = tmp_path / "other.safetensors"
    save_vae(other, ConvVAE(VAEConfig(32, 32, latent_dim=6, width_multiplier=0.5)), FrameSpec(32, 32))
    memory = tmp_path / "memory.safetensors"
    save_memory(memory, MDNRNN(MemoryConfig(6, 5, discrete_actions=True, hidden=4)), vae_sha256=file_sha256(other))
    with pytest.raises(CheckpointError, match=f"SHA-256 {file_sha256(other)}.*SHA-256 {file_sha256(toy_vae_path)}"):
        train_agent(quick(tmp_path, vae=toy_vae_path, memory=str(memory)))
    with pytest.raises(ValueError, match=r"--memory cannot be combined with --latent-history .*, --include-action"):
        StackConfig(TOY, memory=True, latent_history=2, include_action=True)
    with pytest.raises(ValueError, match="--encoder finetune cannot be combined with --memory"):
        StackConfig(TOY, memory=True, encoder="finetune")


def test_collected_actions_are_the_memory_agents(tmp_path, toy_vae_path, toy_memory_path):
    run_dir = tmp_path / "agent"
    config = AgentConfig(TOY, vae=toy_vae_path, memory=toy_memory_path, out=str(run_dir), n_envs=2, normalize=True)
    spec, hp, stack = resolve(config)
    write_run_config(run_dir, config, spec, hp, stack)
    venv = build_vec_env(stack, n_envs=2, seed=0, vae=run_dir / VAE_FILE, device="cpu", memory=run_dir / MEMORY_FILE)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(256)
    save_bundle(run_dir, model, venv)
    venv.close()
    collect = CollectConfig(TOY, out=tmp_path / "data", episodes=2, n_envs=1, max_steps=25, seed=7, progress=False)
    collect_rollouts(collect, policy=BundlePolicyFactory(str(run_dir)))
    ds = FrameDataset.open(tmp_path / "data")
    actions = [np.asarray(ds.episode(row).actions).reshape(-1) for row in range(ds.num_episodes)]
    for row, episode_actions in enumerate(actions):
        np.testing.assert_array_equal(
            episode_actions, replay_predictions(run_dir, ds.episode(row).seed, episode_actions)
        )
    assert len(np.unique(np.concatenate(actions))) > 1, "a constant policy would not test the observation stack"
