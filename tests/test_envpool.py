"""The EnvPool backend: SB3 VecEnv semantics, the presets on both paths, latents, agents, collection, errors."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize, VecTransposeImage

from envs.collect import CollectConfig, collect_rollouts
from envs.config import EnvConfig, env_preset
from envs.envpool.env import EnvPoolUnavailableError, envpool_spec, import_envpool
from envs.factory import make_env
from worldmodel.data import DatasetError, FrameDataset
from worldmodel.frames import FrameSpec, preprocess_frames
from worldmodel.vae.encoder import LatentEncoder

envpool = pytest.importorskip("envpool", reason="the envpool extra is not installed: pip install 'worldmodel[envpool]'")

from envs.envpool.vec_env import EnvPoolVecEnv  # noqa: E402  (needs envpool only to run, not to import)

SPEC = FrameSpec(height=32, width=32)
GAS = np.array([0.0, 0.5, 0.0], np.float32)


def car(**changes) -> EnvConfig:
    """CarRacing-v3's preset on EnvPool, short episodes, small frames."""
    return env_preset("CarRacing-v3").replace(backend="envpool", frame_spec=SPEC, **changes)


def steer(t: int, n: int) -> np.ndarray:
    """Deterministic, varied actions: each env steers its own way."""
    return np.array([[np.sin(0.3 * t + i), 0.3 + 0.1 * i, 0.0] for i in range(n)], np.float32)


def test_episode_ends_follow_sb3_semantics():
    venv = EnvPoolVecEnv(car(frame_skip=2, max_episode_steps=80), n_envs=2, seed=3)
    obs = venv.reset()
    assert obs.shape == (2, 32, 32, 3) and obs.dtype == np.uint8
    total, steps = np.zeros(2), 0
    while True:
        obs, rewards, dones, infos = venv.step(steer(steps, 2))
        total += rewards
        steps += 1
        if dones.any():
            break
        assert [info["frames"] for info in infos] == [2, 2]
    # 80 frames = 50 skipped zoom-in frames + 15 agent steps of 2 frames
    assert steps == 15 and dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 15 and info["episode"]["r"] == pytest.approx(total[i], abs=1e-4)
        assert info["terminal_observation"].shape == (32, 32, 3)
        assert not np.array_equal(info["terminal_observation"], obs[i]), "obs must be the next episode's first"
    # the next episode starts like a fresh env's: zoom-in skipped, zero return so far
    _, _, _, infos = venv.step(steer(0, 2))
    assert "episode" not in infos[0]


def test_termination_is_not_marked_truncated():
    config = env_preset("ALE/Pong-v5").replace(backend="envpool", frame_spec=SPEC)
    venv = EnvPoolVecEnv(config, n_envs=1, seed=0)
    venv.reset()
    for _ in range(5000):  # a game lost to 21 by a paddle that never moves: about 800 agent steps
        _, _, dones, infos = venv.step(np.array([0]))
        if dones[0]:
            break
    assert dones[0] and infos[0]["TimeLimit.truncated"] is False and infos[0]["episode"]["r"] == -21.0
    assert infos[0]["frames"] == 4  # EnvPool repeats Atari actions itself, 4 frames as ALE v5


def test_atari_single_env_keeps_the_gymnasium_preset():
    env = make_env(env_preset("ALE/Pong-v5").replace(backend="envpool"))
    obs, info = env.reset(seed=3)
    assert obs.shape == (210, 160, 3) and obs.dtype == np.uint8 and env.action_space.n == 6
    _, _, _, _, info = env.step(0)
    assert info["frames"] == 4  # the preset's frame skip, done inside EnvPool and counted by FrameSkip
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, again)


def test_vec_env_equals_the_single_env_path_with_the_same_wrappers():
    """EnvPoolVecEnv with frame skip 2 matches make_env's FrameSkip/SkipStartFrames stack over EnvPoolEnv."""
    config = car(frame_skip=2, max_episode_steps=70)
    venv = EnvPoolVecEnv(config, n_envs=2, seed=11)
    batch_obs = [venv.reset()]
    batch_rewards, batch_dones = [], []
    for t in range(12):
        obs, rewards, dones, infos = venv.step(steer(t, 2))
        batch_obs.append(np.stack([info.get("terminal_observation", o) for o, info in zip(obs, infos, strict=True)]))
        batch_rewards.append(rewards)
        batch_dones.append(dones)
    for i in range(2):
        env = make_env(config)
        obs, info = env.reset(seed=11 + i)
        assert info["frames"] == 50
        np.testing.assert_array_equal(batch_obs[0][i], SPEC.apply(obs))
        for t in range(12):
            obs, reward, terminated, truncated, _ = env.step(steer(t, 2)[i])
            np.testing.assert_array_equal(batch_obs[t + 1][i], SPEC.apply(obs), err_msg=f"env {i} step {t}")
            assert batch_rewards[t][i] == pytest.approx(reward, abs=1e-5)
            assert batch_dones[t][i] == (terminated or truncated)
            if terminated or truncated:
                break
        assert truncated and t == 9  # (70 - 50) / 2 steps


def test_seeding_is_reproducible_and_per_env():
    a, b = EnvPoolVecEnv(car(), 3, seed=5), EnvPoolVecEnv(car(), 3, seed=0)
    b.seed(5)
    first_a, first_b = a.reset(), b.reset()
    np.testing.assert_array_equal(first_a, first_b)
    for t in range(60):  # past the zoom-in, where tracks differ
        obs_a, *_ = a.step(steer(t, 3))
        obs_b, *_ = b.step(steer(t, 3))
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(obs_a[0], obs_a[1])
    frame, _ = make_env(car()).reset(seed=6)
    np.testing.assert_array_equal(SPEC.apply(frame), first_a[1])  # env i is seeded seed + i


def test_sb3_helpers_answer():
    venv = EnvPoolVecEnv(car(), 2, seed=0)
    venv.reset()
    assert venv.env_is_wrapped(Monitor) == [True, True]  # infos carry Monitor's episode records
    assert venv.get_attr("render_mode") == ["rgb_array", "rgb_array"]
    assert venv.get_attr("last_frame", indices=[1])[0].shape == (96, 96, 3)
    assert venv.render().shape[-1] == 3
    with pytest.raises(AttributeError, match="no attribute 'car'"):
        venv.get_attr("car")


def test_stacks_on_top_work():
    venv = VecTransposeImage(VecFrameStack(EnvPoolVecEnv(car(max_episode_steps=60), 2, seed=0), n_stack=2))
    norm = VecNormalize(venv, norm_obs=False)
    assert norm.reset().shape == (2, 6, 32, 32)
    for t in range(10):  # 60 frames: 50 skipped, 10 steps
        _, _, dones, infos = norm.step(steer(t, 2))
    assert dones.all() and infos[0]["terminal_observation"].shape == (6, 32, 32)


def test_latent_wrapper_equals_encoding_frames_by_hand(toy_vae_path):
    from envs.latent.sb3_vec_env import VecLatentObservation

    config = car(frame_skip=2, max_episode_steps=60).replace(frame_spec=FrameSpec(height=32, width=32))
    raw = EnvPoolVecEnv(config, 2, seed=1, frame_spec=FrameSpec(height=96, width=96))
    latent = VecLatentObservation(EnvPoolVecEnv(config, 2, seed=1), {"vae": toy_vae_path, "precision": "fp32"})
    encoder = LatentEncoder(toy_vae_path, device="cpu", precision="fp32")
    frames, z = raw.reset(), latent.reset()
    close = dict(rtol=1e-5, atol=1e-4)  # the toy VAE's latents are ~100: batch composition moves the last bits
    np.testing.assert_allclose(z, encoder.encode(preprocess_frames(frames, encoder.frame_spec)), **close)
    for t in range(5):  # (60 - 50) / 2 steps: the last one ends both episodes
        frames, _, dones, raw_infos = raw.step(steer(t, 2))
        z, _, _, infos = latent.step(steer(t, 2))
        np.testing.assert_allclose(z, encoder.encode(preprocess_frames(frames, encoder.frame_spec)), **close)
    assert dones.all()
    terminal = preprocess_frames(np.stack([i["terminal_observation"] for i in raw_infos]), encoder.frame_spec)
    np.testing.assert_allclose(np.stack([i["terminal_observation"] for i in infos]), encoder.encode(terminal), **close)


def test_a_vae_that_crops_reads_envpool_frames_preprocessed_once(tmp_path):
    from envs.latent.sb3_vec_env import VecLatentObservation
    from worldmodel.vae.checkpoint import save_vae
    from worldmodel.vae.model import ConvVAE, VAEConfig

    spec = FrameSpec(height=32, width=32, crop=(0, 0, 84, 96))  # the dashboard cropped off
    path = tmp_path / "crop.safetensors"
    save_vae(path, ConvVAE(VAEConfig(32, 32, latent_dim=4, width_multiplier=0.25)), spec)
    config = car(max_episode_steps=60)
    venv = EnvPoolVecEnv(config, 2, seed=1, frame_spec=spec)
    assert venv.get_attr("frame_spec") == [spec, spec]
    raw = EnvPoolVecEnv(config, 2, seed=1, frame_spec=FrameSpec(height=96, width=96))
    encoder = LatentEncoder(str(path), device="cpu", precision="fp32")
    z = VecLatentObservation(venv, {"vae": str(path), "precision": "fp32"}).reset()
    np.testing.assert_allclose(z, encoder.encode(preprocess_frames(raw.reset(), spec)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_agents_train_on_envpool_and_evaluate_on_both_backends(tmp_path, toy_vae_path, algo):
    from agents.evaluate import EvaluateConfig, evaluate_agent
    from agents.train import AgentConfig, train_agent

    out = tmp_path / algo
    hyperparams = tmp_path / "hp.yaml"
    hyperparams.write_text(
        "CarRacing-v3:\n  n_envs: 2\n  frame_skip: 2\n"
        + ("  n_steps: 64\n  batch_size: 64\n  n_epochs: 1\n" if algo == "ppo" else "  learning_starts: 50\n")
    )
    config = AgentConfig(
        "CarRacing-v3", vae=toy_vae_path, algo=algo, backend="envpool", timesteps=128, out=str(out),
        hyperparams=str(hyperparams), eval_freq=0, progress_bar=False, tensorboard=False, device="cpu",
    )  # fmt: skip
    summary = json.loads((train_agent(config) / "summary.json").read_text())
    # ppo: one rollout of 64 steps in each of 2 envs; sac: 64 steps of 2 envs. Each step repeats its action 2 frames
    assert (summary["agent_steps"], summary["env_frames"]) == (128, 256)
    results = {}
    for backend in ("gymnasium", "envpool", "envpool"):  # envpool twice: the same seed plays the same episode
        result = evaluate_agent(
            EvaluateConfig(str(out), episodes=1, backend=backend, out=str(tmp_path / f"{backend}.json"), device="cpu")
        )
        assert result["backend"] == backend and result["trained_on_backend"] == "envpool"
        assert (result["episodes"], result["seed"]) == (1, json.loads((out / "config.json").read_text())["eval_seed"])
        assert len(result["returns"]) == len(result["lengths"]) == 1 and result["mean_return"] == result["returns"][0]
        # CarRacing's 1000-frame limit less its 50 skipped zoom-in frames, at 2 frames a step: 475 steps. The
        # barely trained car neither finishes the track nor leaves the playfield, so the limit ends its episode
        assert result["lengths"] == [475]
        assert result["returns"][0] > -100  # -0.1 a frame (950 of them), + tiles: not the -100 of leaving the field
        if backend in results:
            assert (result["returns"], result["lengths"]) == (results[backend]["returns"], results[backend]["lengths"])
        results[backend] = result


def test_collection_on_envpool_resumes_after_kill_9(tmp_path):
    out = tmp_path / "killed"
    argv = [sys.executable, "-m", "worldmodel", "collect", "CarRacing-v3", "--backend", "envpool", "--out", str(out),
            "--episodes", "30", "--max-steps", "12", "--n-envs", "2", "--seed", "7", "--size", "32", "32",
            "--policy", "brownian", "--shard-mib", "0.01", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once a shard is complete
        with contextlib.suppress(DatasetError):
            if FrameDataset.open(out, verify="none").num_episodes:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = FrameDataset.open(out).num_episodes
    assert 0 < partial < 30, "the kill came too late to test resuming"
    assert subprocess.run(argv, capture_output=True, timeout=300).returncode == 0
    whole = tmp_path / "whole"
    collect_rollouts(CollectConfig("CarRacing-v3", out=whole, backend="envpool", episodes=30, max_steps=12,
                                   n_envs=1, seed=7, size=(32, 32), policy="brownian", progress=False))  # fmt: skip
    a, b = FrameDataset.open(out), FrameDataset.open(whole)
    eps_a = {a.episode(r).episode_index: a.episode(r) for r in range(a.num_episodes)}
    eps_b = {b.episode(r).episode_index: b.episode(r) for r in range(b.num_episodes)}
    assert sorted(eps_a) == sorted(eps_b) == list(range(30))
    for i in eps_a:
        np.testing.assert_array_equal(eps_a[i].frames, eps_b[i].frames, err_msg=f"episode {i}")
        np.testing.assert_array_equal(eps_a[i].actions, eps_b[i].actions)
    manifest = json.loads(next((out / "collectors").glob("*.json")).read_text())
    assert manifest["attrs"]["env"]["backend"] == "envpool" and manifest["attrs"]["collect"]["backend"] == "envpool"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (EnvConfig("CarRacing-v3", env_kwargs={"continuous": False}, backend="envpool"), "does not support continuous"),
        (EnvConfig("CarRacing-v3", env_kwargs={"domain_randomize": True}, backend="envpool"), "domain_randomize"),
        (EnvConfig("Pendulum-v1", backend="envpool"), "runs CarRacing-v3 and ALE/\\*-v5 ids"),
        (EnvConfig("ALE/Pong-v5", env_kwargs={"obs_type": "ram"}, backend="envpool"), "does not support obs_type"),
    ],
)
def test_options_envpool_lacks_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        envpool_spec(config)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)
    with pytest.raises(EnvPoolUnavailableError, match=r"pip install 'worldmodel\[envpool\]'"):
        import_envpool()


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be one of gymnasium, envpool"):
        EnvConfig("CarRacing-v3", backend="jax")
