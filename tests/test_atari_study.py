"""The Atari 100k study (``python -m experiments.atari``): its budgets, the Atari PPO presets, human-normalised
scores and the report written from records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.hyperparams import resolve_hyperparams
from experiments.atari import scores
from experiments.atari.__main__ import parse_study
from experiments.atari.report import read_study, write_study_report
from experiments.atari.study import StudyConfig, game_config
from experiments.pipeline.config import plan
from experiments.pipeline.records import copy_records
from experiments.pipeline.stages import agent_config


def test_hns_is_zero_at_random_and_one_at_human():
    # DER's Pong (-19.3) and Breakout (1.9), by hand: (-19.3 + 20.7) / 35.3 and 0.2 / 28.8
    assert scores.hns("Pong", -19.3) == pytest.approx(1.4 / 35.3)
    assert scores.hns("Breakout", 1.9) == pytest.approx(0.2 / 28.8)
    assert scores.hns("MsPacman", 307.3) == 0.0 and scores.hns("Seaquest", 42054.7) == pytest.approx(1.0)


def test_every_method_scores_every_game():
    for method in scores.METHODS:
        assert set(method.scores) == set(scores.RANDOM) == set(scores.HUMAN), method.name
        assert 0 < method.median_hns <= method.mean_hns, method.name  # skewed: a few games score far above human


def test_the_budgets_count_the_vae_frames_toward_the_latent_arm():
    study = StudyConfig(games=("Breakout",), seeds=(0, 1), out="/tmp/atari")
    config = game_config(study, "Breakout")
    latent, pixel = (s for s in plan(config) if s.kind == "train-agent" and s.seed == 0)
    assert not latent.pixels and pixel.pixels
    # 400k env frames each: the pixel agent all of them, the latent agent 300k after at most 100k of random play
    assert agent_config(config, latent).timesteps == 300_000 // 4
    assert agent_config(config, pixel).timesteps == 400_000 // 4
    assert config.collect.episodes * config.collect.max_steps * 4 <= 100_000
    assert (config.vae.motion_weight, config.vae.kl_tolerance) == (100.0, 0.5)
    assert config.evaluate.episodes == 30 and config.runs.pixel_seeds == (0, 1)


def test_atari_presets_are_rl_zoos_recipe_on_both_arms(tmp_path):
    pixels = resolve_hyperparams("ppo", "ALE/Breakout-v5", pixels=True)
    latents = resolve_hyperparams("ppo", "ALE/Breakout-v5")
    assert (pixels.policy, pixels.frame_stack, pixels.frame_skip, pixels.latent_history) == ("CnnPolicy", 4, 4, 1)
    assert pixels.frame_spec == {"height": 84, "width": 84, "grayscale": True}
    assert (latents.policy, latents.latent_history, latents.frame_stack, latents.frame_spec) == (
        "MlpPolicy",
        4,
        1,
        None,
    )
    for hp in (pixels, latents):
        assert hp.n_envs == 8 and hp.n_timesteps == 100_000
        assert {k: hp.algo_kwargs[k] for k in ("n_steps", "n_epochs", "batch_size", "learning_rate", "clip_range")} == {
            "n_steps": 128, "n_epochs": 4, "batch_size": 256, "learning_rate": "lin_2.5e-4", "clip_range": "lin_0.1"
        }  # fmt: skip
    assert resolve_hyperparams("ppo", "CarRacing-v3").latent_history == 2  # the family entry is Atari's alone
    user = tmp_path / "ppo.yaml"  # a user's file may set the family too, and the game's own entry wins over it
    user.write_text("atari: {n_envs: 2, n_epochs: 3}\nALE/Pong-v5: {n_envs: 4}\n")
    pong = resolve_hyperparams("ppo", "ALE/Pong-v5", user_file=user)
    assert (pong.n_envs, pong.algo_kwargs["n_epochs"], pong.algo_kwargs["batch_size"]) == (4, 3, 256)


def test_the_command_line_names_games_and_seeds(capsys):
    study = parse_study(["--games", "Pong,Breakout", "--seeds", "3"])
    assert study.games == ("Pong", "Breakout") and study.seeds == (0, 1, 2)
    for argv, message in (
        (["--games", "Tetris"], "--games Tetris: the study has published scores for Pong, Breakout, Boxing"),
        (["--seeds", "0"], "--seeds 0: give at least 1"),
        (["--vae-frames", "400000"], "vae_frames must be between 0 and env_frames (400000), got 400000"),
    ):
        with pytest.raises(SystemExit) as exc:
            parse_study(argv)
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_the_report_command_needs_the_study_record(tmp_path, capsys):
    from experiments.atari.report import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 2
    assert (
        f"{tmp_path} holds no study.json: give the folder python -m experiments.atari wrote" in capsys.readouterr().err
    )


@pytest.mark.parametrize(("installed", "backend"), [(True, "envpool"), (False, "gymnasium")])
def test_the_study_trains_on_envpool_where_it_is_installed(installed, backend, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if installed else None)
    config = game_config(StudyConfig(games=("Pong",)), "Pong")
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert config.backend == backend


def _run(records: Path, name: str, returns: list[float], no_sticky: float | None, frames_per_s: float) -> None:
    run = records / "agents" / name
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"env_frames": 400_000, "elapsed_s": 400_000 / frames_per_s}))
    evaluation = {"mean_return": sum(returns) / len(returns), "returns": returns, "episodes": len(returns)}
    if name == "ppo__seed0":
        evaluation["random"] = {"mean_return": -20.5}
    (run / "evaluation.json").write_text(json.dumps(evaluation))
    if no_sticky is not None:
        (run / "evaluation-nosticky.json").write_text(json.dumps({"mean_return": no_sticky}))


def test_the_report_scores_each_arm_from_the_records(tmp_path):
    records = tmp_path / "report" / "Pong" / "records"
    _run(records, "ppo__seed0", [-20.0, -18.0], -17.0, 1000.0)
    _run(records, "ppo__seed1", [-16.0, -14.0], -13.0, 1200.0)
    _run(records, "pixels-ppo__seed0", [-21.0, -21.0], -20.0, 300.0)
    _run(records, "pixels-ppo__seed1", [-19.0, -19.0], None, 500.0)
    (records / "vae").mkdir()
    (records / "vae" / "summary.json").write_text(json.dumps({
        "train_frames": 9000, "val_frames": 1000, "linear_probe_names": ["player_y", "ball_x"],
        "linear_probe_r2": [0.5, 0.25],
    }))  # fmt: skip
    text = write_study_report(StudyConfig(games=("Pong", "Breakout"), report_dir=str(tmp_path / "report"))).read_text()
    # latent seeds -19 and -15: mean -17, 95% CI 12.706 * 2.828 / 1.414 = 25.4; pixel -21 and -19: -20 +- 12.7
    # HNS (-17 + 20.7) / 35.3 = 10.5%, (-20 + 20.7) / 35.3 = 2.0%; VAE 10,000 frames x 4; 1,100 and 400 frames/s
    assert "| Pong | -17.0 ± 25.4 (2) | -20.0 ± 12.7 (2) | -20.5 | 10.5% | 2.0% | 40,000 | 1,100 | 400 |" in text
    # no sticky: latent -17 and -13 -> -15.0 +- 25.4; the pixel arm's one score -20.0; DER's -19.3 beside them
    assert "| Pong | -20.7 | 14.6 | -15.0 ± 25.4 (2) | -20.0 (1) | 12.8 | -19.3 |" in text
    assert "10.5% against 2.0%, **met**" in text  # latent above pixel
    assert f"{100 * 5.7 / 35.3:.1f}% against {100 * 1.4 / 35.3:.1f}%, **met**" in text  # above DER, no sticky
    assert "Pong 2.75x" in text and "**met**." in text  # 1,100 / 400 env frames/s
    assert "ball_x 0.25, **not met**" in text
    assert "Breakout" not in text.split("## Scores")[0].split("Games with records:")[1].split(".")[0]


def test_records_keep_the_scores_without_sticky_actions(tmp_path):
    run = tmp_path / "out" / "agents" / "ppo__seed0"
    run.mkdir(parents=True)
    for name in ("summary.json", "evaluation.json", "evaluation-nosticky.json", "model.zip"):
        (run / name).write_text("{}")
    model_time = (run / "model.zip").stat().st_mtime
    os.utime(run / "model.zip", (model_time - 10, model_time - 10))  # the policy first, then its scores
    copied = copy_records(tmp_path / "out", tmp_path / "records") / "agents" / "ppo__seed0"
    assert sorted(p.name for p in copied.iterdir()) == ["evaluation-nosticky.json", "evaluation.json", "summary.json"]
    os.utime(run / "evaluation-nosticky.json", (model_time - 20, model_time - 20))  # scored an earlier policy
    copied = copy_records(tmp_path / "out", tmp_path / "records") / "agents" / "ppo__seed0"
    assert sorted(p.name for p in copied.iterdir()) == ["evaluation.json", "summary.json"]


def test_the_study_report_is_written_again_from_its_records(tmp_path, monkeypatch, capsys):
    from experiments import rebuild

    reports = tmp_path / "reports"
    records = reports / "atari-100k" / "Pong" / "records"
    _run(records, "ppo__seed0", [-20.0, -18.0], -17.0, 1000.0)
    _run(records, "pixels-ppo__seed0", [-21.0, -19.0], -20.0, 300.0)
    study = StudyConfig(games=("Pong",), seeds=(0,), report_dir=str(reports / "atari-100k"))
    committed = write_study_report(study).read_text()
    assert "| Pong | -19.0 (1) | -20.0 (1) |" in committed
    assert read_study(reports / "atari-100k") == study  # the settings the report describes, recorded beside it
    monkeypatch.chdir(tmp_path)
    assert rebuild.main(["atari-100k", "--reports-dir", str(reports), "--into", str(tmp_path / "again")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "again" / "atari-100k" / "README.md").read_text() == committed  # the settings from study.json
