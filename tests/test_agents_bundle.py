"""Bundles: save -> load gives the same actions on the same observations (frozen and fine-tuned encoders);
bad bundles are refused; loading never unpickles (a zip crafted to run code is ignored); older bundles convert."""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.save_util import load_from_zip_file

from agents.bundle import NORMALIZE_FILE, VAE_FILE, BundleError, load_bundle, save_bundle
from agents.bundle import main as bundle_main
from agents.bundle_policy import BundlePolicyFactory
from agents.encoder_extractor import find_extractor, finetune_policy_kwargs
from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.resume import save_snapshot
from agents.train import AgentConfig, resolve, write_run_config
from agents.vec_env import build_vec_env
from agents.video import video_codec
from worldmodel.vae.checkpoint import load_vae

PRETRAINED = Path(__file__).resolve().parents[1] / "experiments" / "pretrained" / "carracing"


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
    with pytest.raises(BundleError, match=r"missing policy.json.*--resume"):
        load_bundle(tmp_path)
    (tmp_path / "model.zip").write_bytes((run_dir / "model.zip").read_bytes())
    fix = re.escape(f"`python -m agents.bundle convert {tmp_path}`")
    with pytest.raises(BundleError, match=rf"no policy\.json or policy\.safetensors .*{fix}"):
        load_bundle(tmp_path)
    for name in ("policy.json", "policy.safetensors"):
        (tmp_path / name).write_bytes((run_dir / name).read_bytes())
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


def _copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("checkpoints", "tb"))
    return dest


@pytest.fixture
def unpickling_fails(monkeypatch):
    """pickle's and cloudpickle's loaders, and torch.load of anything but plain tensors, raise."""
    import cloudpickle

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "load", refuse)
        monkeypatch.setattr(module, "loads", refuse)
    torch_load = torch.load

    def tensors_only(*args, weights_only=None, **kwargs):
        if weights_only is not True:
            refuse()
        return torch_load(*args, weights_only=True, **kwargs)

    monkeypatch.setattr(torch, "load", tensors_only)


def test_evaluation_never_unpickles(trained_bundle, tmp_path, unpickling_fails, one_torch_thread):
    run_dir, *_ = trained_bundle
    with pytest.raises(AssertionError, match="unpickled"):  # the ban bites: SB3's load needs cloudpickle
        PPO.load(run_dir / "model.zip", device="cpu")
    results = evaluate_agent(EvaluateConfig(str(run_dir), episodes=2, device="cpu", out=str(tmp_path / "e.json")))
    assert len(results["returns"]) == 2


@pytest.mark.slow
def test_the_pretrained_bundle_evaluates_without_unpickling(tmp_path, unpickling_fails):
    """The shipped bundle (CarRacing-v3, about a minute an episode on 2 busy cores)."""
    assert not (PRETRAINED / "model.zip").exists()  # nothing pickled is shipped
    results = evaluate_agent(EvaluateConfig(str(PRETRAINED), episodes=1, seed=1_000_000, out=str(tmp_path / "e.json")))
    assert results["algo"] == "tqc" and len(results["returns"]) == 1


class _Payload:
    """Unpickling it creates the directory ``marker``: a stand-in for any code a crafted zip could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _plant_payload(zip_path: Path, marker: Path) -> None:
    """Rewrite the SB3 zip so that loading it runs :class:`_Payload` (in its policy class, which SB3 always
    deserialises)."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    payload = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
    data["policy_class"] = {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_a_zip_crafted_to_run_code_is_evaluated_without_running_it(trained_bundle, tmp_path, one_torch_thread):
    run_dir = _copy_run(trained_bundle[0], tmp_path / "run")
    marker = tmp_path / "payload-ran"
    _plant_payload(run_dir / "model.zip", marker)
    evaluate_agent(EvaluateConfig(str(run_dir), episodes=1, device="cpu", out=str(tmp_path / "e.json")))
    bundle_policy = BundlePolicyFactory(str(run_dir))(load_bundle(run_dir, device="cpu").venv.action_space)
    assert bundle_policy.bundle.model.num_timesteps == 256
    assert not marker.exists()
    load_from_zip_file(run_dir / "model.zip")  # the payload is live: SB3's loader runs it
    assert marker.is_dir()


def test_a_policy_file_naming_a_class_outside_the_allow_list_is_refused(trained_bundle, tmp_path):
    run_dir = _copy_run(trained_bundle[0], tmp_path / "run")
    record = json.loads((run_dir / "policy.json").read_text())
    record["policy_kwargs"]["activation_fn"] = "builtins.exec"
    (run_dir / "policy.json").write_text(json.dumps(record))
    with pytest.raises(BundleError, match=r"names activation_fn 'builtins\.exec', which is not one of ReLU") as info:
        load_bundle(run_dir, device="cpu")
    assert "\n" not in str(info.value)


def test_convert_writes_the_policy_files_of_an_older_bundle_and_its_best(trained_bundle, tmp_path, capsys):
    run_dir = _copy_run(trained_bundle[0], tmp_path / "run")
    _, model, venv = trained_bundle
    save_snapshot(run_dir / "best" / "best.json", model, venv, {"mean_return": 1.0})  # a best/ without policy files
    for name in ("policy.json", "policy.safetensors"):
        (run_dir / name).unlink()
    for policy in ("final", "best"):
        with pytest.raises(BundleError, match=r"python -m agents\.bundle convert"):
            load_bundle(run_dir, policy=policy, device="cpu")
    assert bundle_main(["convert", str(run_dir)]) == 0
    assert "wrote" in capsys.readouterr().out
    obs = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    for policy in ("final", "best"):
        bundle = load_bundle(run_dir, policy=policy, device="cpu")
        expected = model.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(bundle.model.predict(obs, deterministic=True)[0], expected)
        bundle.venv.close()
    best = json.loads((run_dir / "best" / "best.json").read_text())
    assert best["files"]["policy"] == "policy_256.json" and (run_dir / "best" / "policy_256.safetensors").is_file()
