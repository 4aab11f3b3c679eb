"""evaluate: JSON results, a random baseline on the same seeds, and an H.264 video with three panels."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import imageio_ffmpeg
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import agents.evaluate as evaluate_module
from agents.evaluate import EvaluateConfig, evaluate_agent, policy_act
from agents.evaluation_progress import EvaluationProgress, progress_path
from agents.train import AgentConfig, train_agent
from agents.video import video_codec
from envs.toy import DotTargetEnv
from worldmodel.common.sealed import sealed


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, toy_vae_path):
    out = tmp_path_factory.mktemp("eval") / "run"
    config = AgentConfig(
        "worldmodel/DotTarget-v0", vae=toy_vae_path, timesteps=128, out=str(out), n_envs=2, eval_freq=0,
        device="cpu", progress_bar=False, tensorboard=False,
    )  # fmt: skip
    return train_agent(config)


def test_evaluation_writes_json_and_a_three_panel_h264_video(run_dir, tmp_path):
    video = tmp_path / "agent.mp4"
    results = evaluate_agent(EvaluateConfig(str(run_dir), episodes=2, video=str(video), device="cpu"))
    stored = json.loads((run_dir / "evaluation.json").read_text())
    assert stored["mean_return"] == pytest.approx(results["mean_return"])
    assert len(stored["returns"]) == len(stored["lengths"]) == 2
    assert stored["seed"] == json.loads((run_dir / "config.json").read_text())["eval_seed"]
    assert video_codec(video) == "h264"
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    width, height = meta["size"]
    assert width == 3 * height  # env frame | reconstruction | return so far
    assert sum(1 for _ in reader) == results["lengths"][0] + 1  # the reset frame, then one per step


def test_random_baseline_uses_the_same_seeds_and_is_deterministic(run_dir, tmp_path, monkeypatch):
    # the tracks of seed 7: episode i resets from seed 7 + i
    tracks = [DotTargetEnv().reset(seed=seed)[1]["state"].tolist() for seed in (7, 8, 9)]
    assert len({tuple(track) for track in tracks}) == 3
    runs = []  # per run_episodes call (the agent's, then the random policy's): (seed, start state) of each reset
    real_run, real_reset = evaluate_module.run_episodes, DotTargetEnv.reset

    def run_episodes(*args, **kwargs):
        runs.append([])
        return real_run(*args, **kwargs)

    def reset(env, *, seed=None, options=None):
        obs, info = real_reset(env, seed=seed, options=options)
        if runs:  # inside run_episodes
            runs[-1].append((seed, info["state"].tolist()))
        return obs, info

    monkeypatch.setattr(evaluate_module, "run_episodes", run_episodes)
    monkeypatch.setattr(DotTargetEnv, "reset", reset)
    first = evaluate_agent(
        EvaluateConfig(str(run_dir), episodes=3, seed=7, random_baseline=True, out=str(tmp_path / "a.json"))
    )
    agent, rand = runs
    assert [seed for seed, _ in agent[:3]] == [7, 8, 9]
    assert [start for _, start in agent[:3]] == tracks
    assert rand == agent  # the random policy: the same seed, then the same start states
    assert len(first["returns"]) == len(first["random"]["returns"]) == 3
    assert first["random"]["returns"] != first["returns"]  # a different policy on those tracks

    second = evaluate_agent(
        EvaluateConfig(str(run_dir), episodes=3, seed=7, random_baseline=True, out=str(tmp_path / "b.json"))
    )
    assert runs[2:] == [agent, rand]
    assert first["returns"] == second["returns"] and first["random"]["returns"] == second["random"]["returns"]
    assert json.loads((tmp_path / "a.json").read_text())["random"]["returns"] == first["random"]["returns"]


def test_episode_i_drives_track_seed_plus_i_whatever_the_number_of_envs(run_dir, tmp_path):
    def evaluate(episodes: int, seed: int, n_envs: int = 1) -> dict:
        config = EvaluateConfig(str(run_dir), episodes, seed=seed, n_envs=n_envs, out=str(tmp_path / "e.json"))
        return evaluate_agent(config)

    one_env = evaluate(4, seed=7)
    assert one_env["tracks"] == "episode i from seed + i"
    assert len(set(one_env["returns"])) > 1  # the episodes differ: a wrong order would show
    for n_envs in (2, 3):  # env 0 of 3 plays episodes 0 and 3, env 1 episode 1, env 2 episode 2
        parallel = evaluate(4, seed=7, n_envs=n_envs)
        assert parallel["returns"] == one_env["returns"] and parallel["lengths"] == one_env["lengths"]
    assert evaluate(2, seed=9)["returns"] == one_env["returns"][2:]  # episode 2 of seed 7 is episode 0 of seed 9


def test_more_envs_than_episodes_is_refused_with_the_fix(run_dir):
    with pytest.raises(ValueError, match=r"--n-envs 3 must be between 1 and --episodes \(2\)"):
        evaluate_agent(EvaluateConfig(str(run_dir), episodes=2, n_envs=3, seed=0))


@pytest.mark.parametrize(
    ("use_sde", "deterministic", "redraws"), [(True, False, 3), (True, True, 0), (False, False, 0)]
)
def test_sampled_gsde_actions_redraw_the_noise_as_training_does(use_sde, deterministic, redraws, monkeypatch):
    venv = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, use_sde=use_sde, sde_sample_freq=4, seed=0, device="cpu")
    calls = []
    monkeypatch.setattr(model.policy, "reset_noise", lambda n_envs: calls.append(n_envs))
    act = policy_act(SimpleNamespace(model=model), deterministic=deterministic)
    obs, episode_start = venv.reset(), np.ones(2, dtype=bool)
    for _ in range(9):  # steps 0, 4 and 8 draw the noise, as sde_sample_freq=4 does in training
        obs, _, episode_start, _ = venv.step(act(obs, episode_start))
    assert calls == [2] * redraws


def _stop_after_saves(monkeypatch, saves: int) -> None:
    """Make the progress file's ``saves``-th write the last thing an evaluation does, as a kill would."""
    real_save, calls = EvaluationProgress.save, []

    def save_then_stop(progress: EvaluationProgress) -> None:
        real_save(progress)
        calls.append(1)
        if len(calls) == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(EvaluationProgress, "save", save_then_stop)


@pytest.mark.parametrize(("n_envs", "saves"), [(1, 2), (2, 1)], ids=["one-env", "one-env-of-two-not-done-yet"])
def test_an_interrupted_evaluation_resumes_and_scores_the_episodes_of_an_uninterrupted_one(
    run_dir, tmp_path, monkeypatch, capsys, n_envs, saves
):
    config = EvaluateConfig(str(run_dir), 3, seed=7, n_envs=n_envs, random_baseline=True, out=str(tmp_path / "e.json"))
    whole = evaluate_agent(dataclasses.replace(config, out=str(tmp_path / "whole.json")))
    assert len(set(whole["returns"])) > 1  # the episodes differ: a wrong track would show

    with monkeypatch.context() as patch:
        _stop_after_saves(patch, saves)
        with pytest.raises(KeyboardInterrupt):
            evaluate_agent(config)
    progress = progress_path(config.out)
    assert progress.is_file() and not (tmp_path / "e.json").exists()
    resumed = evaluate_agent(config)
    assert f"{saves} episodes already finished" in capsys.readouterr().out
    assert resumed["returns"] == whole["returns"] and resumed["lengths"] == whole["lengths"]
    assert resumed["random"] == whole["random"]  # the baseline runs whole, from its seed
    assert json.loads((tmp_path / "e.json").read_text())["returns"] == whole["returns"]
    assert not progress.exists()  # done: nothing left to resume


def test_progress_of_other_settings_is_replaced_not_mixed_in(run_dir, tmp_path, monkeypatch, capsys):
    config = EvaluateConfig(str(run_dir), episodes=3, seed=7, out=str(tmp_path / "e.json"))
    with monkeypatch.context() as patch:
        _stop_after_saves(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            evaluate_agent(config)
    other_seed = evaluate_agent(dataclasses.replace(config, seed=8))
    assert "holds another evaluation's progress" in capsys.readouterr().out
    fresh = evaluate_agent(dataclasses.replace(config, seed=8, out=str(tmp_path / "fresh.json")))
    assert other_seed["returns"] == fresh["returns"] and len(other_seed["returns"]) == 3


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _log_one_env_too_many(text: str) -> str:
    stored = json.loads(text)
    stored["log"]["finished"].append([])
    return json.dumps(sealed(stored))  # sealed again: the content itself must be refused


def _claim_more_episodes_than_asked(text: str) -> str:
    stored = json.loads(text)
    stored["log"]["finished"][0] = [[1.0, 10]] * 10
    return json.dumps(sealed(stored))  # sealed again: the content itself must be refused


def _malform_an_episode(text: str) -> str:
    stored = json.loads(text)
    stored["log"]["finished"][0] = [["a return", 10]]
    return json.dumps(sealed(stored))  # sealed again: the content itself must be refused


@pytest.mark.parametrize(
    "spoil",
    [_truncate, _log_one_env_too_many, _claim_more_episodes_than_asked, _malform_an_episode],
    ids=["truncated", "wrong-env-count", "more-episodes-than-asked", "malformed-episode"],
)
def test_an_unreadable_progress_file_is_named_and_the_evaluation_starts_over(
    run_dir, tmp_path, monkeypatch, capsys, spoil
):
    config = EvaluateConfig(str(run_dir), episodes=3, seed=7, out=str(tmp_path / "e.json"))
    with monkeypatch.context() as patch:
        _stop_after_saves(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            evaluate_agent(config)
    progress = progress_path(config.out)
    progress.write_text(spoil(progress.read_text()))
    resumed = evaluate_agent(config)
    message = capsys.readouterr().out
    assert f"{progress} is not a readable evaluation progress file" in message and "starting over" in message
    fresh = evaluate_agent(dataclasses.replace(config, out=str(tmp_path / "fresh.json")))
    assert resumed["returns"] == fresh["returns"] and len(resumed["returns"]) == 3
