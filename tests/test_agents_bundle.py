"""Bundles: save -> load gives the same actions on the same observations; bad bundles are refused."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO

from agents.bundle import NORMALIZE_FILE, VAE_FILE, BundleError, load_bundle, save_bundle
from agents.train import AgentConfig, resolve, write_run_config
from agents.vec_env import build_vec_env


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory, toy_vae_path):
    """A PPO agent trained briefly on normalised latents, saved as a bundle; with its in-memory model and env."""
    run_dir = tmp_path_factory.mktemp("bundle")
    config = AgentConfig("worldmodel/DotTarget-v0", vae=toy_vae_path, out=str(run_dir), n_envs=2, normalize=True)
    spec, hp, stack = resolve(config)
    write_run_config(run_dir, config, spec, hp, stack)
    venv = build_vec_env(stack, n_envs=2, seed=0, vae=run_dir / VAE_FILE, device="cpu")
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(256)
    save_bundle(run_dir, model, venv)
    return run_dir, model, venv


def test_loaded_bundle_acts_exactly_like_the_trained_agent(trained_bundle):
    run_dir, model, venv = trained_bundle
    bundle = load_bundle(run_dir, n_envs=2, seed=123, device="cpu")
    obs = bundle.venv.reset()
    for _ in range(20):
        expected_obs = venv.normalize_obs(bundle.venv.get_original_obs())
        np.testing.assert_allclose(obs, expected_obs, rtol=1e-6)
        actions, _ = bundle.model.predict(obs, deterministic=True)
        expected, _ = model.predict(expected_obs, deterministic=True)
        np.testing.assert_array_equal(actions, expected)
        obs, *_ = bundle.venv.step(actions)
    assert not bundle.venv.training and not bundle.venv.norm_reward
    bundle.venv.close()


def test_modified_vae_is_refused(trained_bundle, tmp_path):
    run_dir, *_ = trained_bundle
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    with open(copy / VAE_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"was modified since training.*Restore the original file"):
        load_bundle(copy)
    (copy / VAE_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing {VAE_FILE}"):
        load_bundle(copy)


def test_missing_files_say_what_to_do(trained_bundle, tmp_path):
    run_dir, *_ = trained_bundle
    for name in ("config.json", "vae.safetensors", NORMALIZE_FILE):
        (tmp_path / name).write_bytes((run_dir / name).read_bytes())
    with pytest.raises(BundleError, match=r"missing model.zip.*--resume"):
        load_bundle(tmp_path)
    (tmp_path / "model.zip").write_bytes((run_dir / "model.zip").read_bytes())
    (tmp_path / NORMALIZE_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing {NORMALIZE_FILE}"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match=r"no config\.json"):
        load_bundle(tmp_path / "nowhere")
