"""evaluate: JSON results, a random baseline on the same seeds, and an H.264 video with three panels."""

from __future__ import annotations

import json

import imageio_ffmpeg
import pytest

from agents.evaluate import EvaluateConfig, evaluate_agent
from agents.train import AgentConfig, train_agent
from agents.video import video_codec


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


def test_random_baseline_uses_the_same_seeds_and_is_deterministic(run_dir, tmp_path):
    first = evaluate_agent(
        EvaluateConfig(str(run_dir), episodes=3, seed=7, random_baseline=True, out=str(tmp_path / "a.json"))
    )
    second = evaluate_agent(
        EvaluateConfig(str(run_dir), episodes=3, seed=7, random_baseline=True, out=str(tmp_path / "b.json"))
    )
    assert first["returns"] == second["returns"] and first["random"]["returns"] == second["random"]["returns"]
    assert (tmp_path / "a.json").is_file()


def test_parallel_envs_run_the_same_episodes_as_one_env_per_seed(run_dir, tmp_path):
    def returns(episodes: int, seed: int, n_envs: int = 1) -> list[float]:
        config = EvaluateConfig(str(run_dir), episodes, seed=seed, n_envs=n_envs, out=str(tmp_path / "e.json"))
        return evaluate_agent(config)["returns"]

    parallel = returns(3, seed=7, n_envs=2)  # env 0: 2 episodes from seed 7; env 1: 1 from seed 8
    assert len(parallel) == 3
    assert parallel == pytest.approx(returns(2, seed=7) + returns(1, seed=8))


def test_more_envs_than_episodes_is_refused_with_the_fix(run_dir):
    with pytest.raises(ValueError, match=r"--n-envs 3 must be between 1 and --episodes \(2\)"):
        evaluate_agent(EvaluateConfig(str(run_dir), episodes=2, n_envs=3, seed=0))
