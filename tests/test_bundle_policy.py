"""Collecting with a trained agent: the stored actions are the bundle's, on its own restored stack."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from stable_baselines3 import PPO

from agents.bundle import VAE_FILE, BundleError, load_bundle, save_bundle
from agents.bundle_policy import BundlePolicyFactory
from agents.train import AgentConfig, resolve, write_run_config
from agents.vec_env import build_vec_env
from envs.collect import CollectConfig, collect_rollouts
from worldmodel.cli import main
from worldmodel.data import FrameDataset

TOY = "worldmodel/DotTarget-v0"


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory, toy_vae_path):
    """A briefly trained PPO bundle whose observations use every layer: history 2, previous action, VecNormalize."""
    run_dir = tmp_path_factory.mktemp("agent")
    config = AgentConfig(
        TOY, vae=toy_vae_path, out=str(run_dir), n_envs=2, normalize=True, latent_history=2, include_action=True
    )
    spec, hp, stack = resolve(config)
    write_run_config(run_dir, config, spec, hp, stack)
    venv = build_vec_env(stack, n_envs=2, seed=0, vae=run_dir / VAE_FILE, device="cpu")
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(256)
    save_bundle(run_dir, model, venv)
    venv.close()
    return run_dir


def replay_predictions(run_dir, seed: int, actions: np.ndarray) -> np.ndarray:
    """The bundle's deterministic actions along an episode driven by ``actions``, on a stack from load_bundle."""
    bundle = load_bundle(run_dir, n_envs=1, device="cpu")
    bundle.venv.seed(seed)  # after loading: SB3's load re-seeds the env with the model's training seed
    obs = bundle.venv.reset()
    predicted = []
    for action in actions:
        predicted.append(bundle.model.predict(obs, deterministic=True)[0][0])
        obs, *_ = bundle.venv.step(np.array([action]))
    bundle.venv.close()
    return np.array(predicted)


def test_collected_actions_are_the_agents(agent_dir, tmp_path):
    factory = pickle.loads(pickle.dumps(BundlePolicyFactory(str(agent_dir))))  # workers receive it pickled
    config = CollectConfig(TOY, out=tmp_path / "data", episodes=3, n_envs=2, max_steps=25, seed=7, progress=False)
    collect_rollouts(config, policy=factory)
    ds = FrameDataset.open(tmp_path / "data")
    assert ds.num_episodes == 3 and ds.frame_spec.shape == (64, 64, 3)  # stored as any collection: not the VAE's 32x32
    all_actions = []
    for episode in (ds.episode(row) for row in range(ds.num_episodes)):
        actions = np.asarray(episode.actions).reshape(-1)
        all_actions.append(actions)
        np.testing.assert_array_equal(actions, replay_predictions(agent_dir, episode.seed, actions))
    assert len(np.unique(np.concatenate(all_actions))) > 1, "a constant policy would not test the observation stack"


def test_epsilon_replaces_actions_reproducibly(agent_dir, tmp_path):
    def collect(out, epsilon):
        config = CollectConfig(TOY, out=out, episodes=1, n_envs=1, max_steps=30, seed=3, progress=False)
        collect_rollouts(config, policy=BundlePolicyFactory(str(agent_dir), epsilon=epsilon))
        return np.asarray(FrameDataset.open(out).episode(0).actions).reshape(-1)

    greedy, noisy, again = collect(tmp_path / "a", 0.0), collect(tmp_path / "b", 0.5), collect(tmp_path / "c", 0.5)
    np.testing.assert_array_equal(noisy, again)
    assert not np.array_equal(greedy[: len(noisy)], noisy[: len(greedy)])


def test_cli_collects_with_an_agent_and_refuses_mismatches(agent_dir, tmp_path, capsys):
    out = tmp_path / "data"
    args = ["collect", TOY, "--out", str(out), "--episodes", "1", "--n-envs", "1", "--max-steps", "5"]
    assert main([*args, "--policy", str(agent_dir), "--no-progress"]) == 0
    assert FrameDataset.open(out).num_episodes == 1
    assert main([*args, "--policy", "random", "--epsilon", "0.1"]) == 2
    assert "--policy RUN_DIR" in capsys.readouterr().err
    other = ["collect", "worldmodel/DotTargetContinuous-v0", "--out", str(tmp_path / "c"), "--policy", str(agent_dir)]
    assert main(other) == 2
    assert "collect with the agent's settings" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs Box actions"):
        BundlePolicyFactory(str(agent_dir), noise=0.3)(load_bundle(agent_dir, device="cpu").venv.action_space)
    with pytest.raises(BundleError, match=r"no config\.json"):
        BundlePolicyFactory(str(tmp_path))(None)


def test_collection_takes_the_agents_env_settings_unless_told_otherwise(toy_vae_path, tmp_path, capsys):
    """An agent trained at frame skip 3 collects at frame skip 3 without --frame-skip; an explicit other value is
    refused."""
    run_dir = tmp_path / "agent"
    run_dir.mkdir()
    hyperparams = tmp_path / "hp.yml"
    hyperparams.write_text(f"{TOY}:\n  frame_skip: 3\n")
    config = AgentConfig(TOY, vae=toy_vae_path, out=str(run_dir), n_envs=1, hyperparams=str(hyperparams))
    spec, hp, stack = resolve(config)
    assert stack.frame_skip == 3
    write_run_config(run_dir, config, spec, hp, stack)
    venv = build_vec_env(stack, n_envs=1, seed=0, vae=run_dir / VAE_FILE, device="cpu")
    save_bundle(run_dir, PPO("MlpPolicy", venv, n_steps=16, batch_size=16, seed=0, device="cpu"), venv)
    venv.close()
    out = tmp_path / "data"
    args = ["collect", TOY, "--out", str(out), "--episodes", "1", "--n-envs", "1", "--max-steps", "4", "--no-progress"]
    assert main([*args, "--policy", str(run_dir)]) == 0
    assert FrameDataset.open(out).num_frames == 5  # 4 agent steps
    (collector,) = (out / "collectors").glob("*.json")
    assert json.loads(collector.read_text())["attrs"]["env"]["frame_skip"] == 3
    assert "(12 env frames)" in capsys.readouterr().out  # 4 agent steps of 3 env frames
    assert main([*args, "--policy", str(run_dir), "--frame-skip", "1"]) == 2
    assert "frame skip" in capsys.readouterr().err
