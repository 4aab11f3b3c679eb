"""Bundles: save -> load gives the same actions on the same observations (frozen and fine-tuned encoders);
bad bundles are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from agents.bundle import NORMALIZE_FILE, VAE_FILE, BundleError, load_bundle, save_bundle
from agents.encoder_extractor import find_extractor, finetune_policy_kwargs
from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.train import AgentConfig, resolve, write_run_config
from agents.vec_env import build_vec_env
from agents.video import video_codec
from worldmodel.vae.checkpoint import load_vae


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


def test_load_bundle_seeds_its_envs(trained_bundle):
    run_dir, *_ = trained_bundle
    venvs = [load_bundle(run_dir, seed=seed, device="cpu").venv for seed in (3, 3, 4)]
    obs = [venv.reset() for venv in venvs]
    np.testing.assert_array_equal(obs[0], obs[1])
    assert not np.array_equal(obs[0], obs[2])


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


@pytest.fixture(scope="module")
def finetune_bundle(tmp_path_factory, toy_vae_path):
    """A PPO agent with a fine-tuned encoder (history 2, aux VAE loss), trained briefly, saved, then moved."""
    run_dir = tmp_path_factory.mktemp("finetune") / "run"
    config = AgentConfig(
        "worldmodel/DotTarget-v0", vae=toy_vae_path, out=str(run_dir), n_envs=2, normalize=True,
        encoder="finetune", latent_history=2, aux_recon_weight=1e-3,
    )  # fmt: skip
    spec, hp, stack = resolve(config)
    write_run_config(run_dir, config, spec, hp, stack)
    venv = build_vec_env(stack, n_envs=2, seed=0, vae=run_dir / VAE_FILE, device="cpu")
    kwargs = finetune_policy_kwargs({}, run_dir / VAE_FILE, history=2, aux_recon_weight=1e-3)
    model = PPO("MlpPolicy", venv, policy_kwargs=kwargs, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    save_bundle(run_dir, model, venv)
    moved = run_dir.parent / "moved"
    run_dir.rename(moved)  # the zip names the VAE at its training-time path, which no longer exists
    return moved, model, venv


def test_finetune_bundle_restores_identical_actions(finetune_bundle, one_torch_thread):
    run_dir, model, venv = finetune_bundle
    bundle = load_bundle(run_dir, n_envs=2, seed=123, device="cpu")
    assert bundle.venv.observation_space.shape == (6, 32, 32) and venv.norm_obs is False
    loaded = find_extractor(bundle.model.policy).state_dict()
    trained = find_extractor(model.policy).state_dict()
    assert all(torch.equal(loaded[name], trained[name]) for name in trained)
    initial = load_vae(run_dir / VAE_FILE).vae.state_dict()
    assert not torch.equal(loaded["vae.encoder.0.weight"], initial["encoder.0.weight"])  # fine-tuned, not reloaded
    obs = bundle.venv.reset()
    for _ in range(20):
        actions, _ = bundle.model.predict(obs, deterministic=True)
        expected, _ = model.predict(obs, deterministic=True)
        np.testing.assert_array_equal(actions, expected)
        obs, *_ = bundle.venv.step(actions)
    bundle.venv.close()


def test_finetune_bundle_evaluates_with_a_reconstruction_video(finetune_bundle, tmp_path, one_torch_thread):
    run_dir, *_ = finetune_bundle
    video = tmp_path / "agent.mp4"
    results = evaluate_agent(
        EvaluateConfig(str(run_dir), episodes=1, video=str(video), device="cpu", out=str(tmp_path / "e.json"))
    )
    assert results["mode"] == "finetune" and video_codec(video) == "h264"


def test_compare_arms_probes_the_policy_s_fine_tuned_encoder(finetune_bundle, one_torch_thread):
    from experiments.pipeline.report import AgentRun
    from experiments.studies.compare_arms import arm_vae, reconstruction_mse

    run_dir, model, _ = finetune_bundle
    vae = arm_vae(AgentRun("finetune-ppo", 0, run_dir, {}, None))
    trained = find_extractor(model.policy).vae.state_dict()
    assert all(torch.equal(vae.state_dict()[name], trained[name]) for name in trained)
    frozen = arm_vae(AgentRun("ppo", 0, run_dir, {}, None))  # a frozen run sees the checkpoint as it is
    assert not torch.equal(frozen.state_dict()["encoder.0.weight"], trained["encoder.0.weight"])
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    spec = load_vae(run_dir / VAE_FILE).frame_spec
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    expected = float(((vae.decode(vae.encode(x)[0]) - x) ** 2).mean())
    assert reconstruction_mse(vae, frames, spec, batch=2) == pytest.approx(expected, rel=1e-5)
