"""The recipe study's arms are valid recipes (each resolves for its algorithm and changes one factor); its report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.hyperparams import parse_policy_kwargs, resolve_hyperparams
from experiments.studies.recipe_study import (
    ARM_RECORDS,
    ARMS,
    ENV_ID,
    STUDY_FILE,
    arm_named,
    frame_skip,
    hyperparams,
    main,
    vae_finished,
)


@pytest.mark.parametrize("arm", ARMS, ids=lambda arm: arm.name)
def test_every_arm_resolves_for_its_algorithm(arm, tmp_path: Path) -> None:
    if arm.algo in ("tqc", "crossq", "recurrentppo"):
        pytest.importorskip("sb3_contrib")
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump({ENV_ID: hyperparams(arm)}))
    hp = resolve_hyperparams(arm.algo, ENV_ID, user_file=path)
    assert hp.frame_skip == frame_skip(arm)
    assert isinstance(parse_policy_kwargs(hp.algo_kwargs.get("policy_kwargs", {})), dict)


def test_arms_differ_from_the_squashed_recipe_in_one_place() -> None:
    base = arm_named("squash")
    for arm in ARMS:
        if arm.algo not in ("ppo", "recurrentppo") or arm is base:
            continue
        changed = {key for key, value in hyperparams(arm).items() if hyperparams(base).get(key) != value}
        changed |= {"latent_history"} if arm.latent_history != base.latent_history else set()
        changed |= {"include_action"} if arm.include_action else set()
        changed |= {"extra_args"} if arm.extra_args else set()
        changed |= {"vae"} if arm.vae else set()
        assert 1 <= len(changed) <= 2, (arm.name, changed)  # e.g. standardize: normalize + its flag


def test_squashed_arm_squashes() -> None:
    kwargs = parse_policy_kwargs(hyperparams(arm_named("squash"))["policy_kwargs"])
    assert kwargs["squash_output"] is True and kwargs["log_std_init"] == -2


def _finished_arm(run: Path, det: list[float], sampled: list[float], seed: int = 0) -> None:
    """The files a finished arm leaves behind (no TensorBoard log: its training return reads '-')."""
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"agent": {"seed": seed}}))
    (run / "summary.json").write_text(json.dumps({"env_frames": 300_000, "elapsed_s": 600.0}))
    for name, returns in (("deterministic", det), ("sampled", sampled)):
        (run / f"screen-{name}.json").write_text(json.dumps({"returns": returns}))
    gas = {"deterministic_mean": {"gas": 0.5}, "deterministic_at_low": {"gas": 0.04}, "sampled_mean": {"gas": 0.6}}
    (run / "action-stats.json").write_text(json.dumps(gas))
    np.savez(run / "evaluations.npz", timesteps=np.array([100, 200]), results=np.array([[1.0, 3.0], [5.0, 7.0]]))


def test_report_tables_finished_arms_only_and_plots_their_curves(tmp_path: Path) -> None:
    _finished_arm(tmp_path / "runs" / "squash", det=[1.0, 2.0, 3.0], sampled=[10.0, 10.0, 10.0])
    (tmp_path / "runs" / "fs4").mkdir()  # started, not finished: no row
    report = tmp_path / "reports" / "recipe"
    argv = ["--out", str(tmp_path / "runs"), "--arms", "squash,fs4", "--report", str(report)]
    assert main(argv) == 0
    readme = report / "README.md"
    readme.write_text("# Notes first, by hand\n\n" + readme.read_text())
    assert main(argv) == 0  # written again: the prose above the generated part is kept
    text = readme.read_text()
    assert text.startswith("# Notes first, by hand\n\n<!-- generated: begin -->\n## The screening table")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert rows == [
        "| actions | tanh-squashed gSDE actions (base of the arms below) | `squash` | 300,000 | 10.0 | 500 | "
        "**2.0 ± 2.5** | 10.0 ± 0.0 | - | 0.50 | 4% | 0.60 |"
    ]
    assert (report / "screening_curves.png").stat().st_size > 1000
    assert "![screening curves](screening_curves.png)" in text


def test_report_pools_arms_repeated_over_seeds(tmp_path: Path) -> None:
    _finished_arm(tmp_path / "seed2" / "squash", det=[1.0, 2.0, 3.0], sampled=[10.0, 10.0, 10.0], seed=2)
    _finished_arm(tmp_path / "seed2" / "fs4", det=[5.0, 5.0], sampled=[5.0, 5.0], seed=2)
    _finished_arm(tmp_path / "seed1" / "squash", det=[4.0, 4.0, 4.0], sampled=[10.0, 10.0, 10.0], seed=1)
    (tmp_path / "seed3" / "fs4").mkdir(parents=True)  # not finished: fs4 has one seed, no row
    report = tmp_path / "recipe"
    argv = ["--out", str(tmp_path / "seed2"), "--arms", "squash,fs4", "--report", str(report)]
    assert main([*argv, "--seed-outs", str(tmp_path / "seed1"), str(tmp_path / "seed3")]) == 0
    text = (report / "README.md").read_text()
    repeated = text.split("## Arms repeated over seeds")[1]
    rows = [line for line in repeated.splitlines() if line.startswith("| `")]
    # seed means 4.0 and 2.0, listed by seed: mean 3.0, t(0.975, 1) * sd / sqrt(2) = 12.7
    assert rows == ["| `squash` | 2 | 4.0 (seed 1), 2.0 (seed 2) | **3.0 ± 12.7** | 10.0 ± 0.0 |"]
    assert "Each arm: seed 2, ~303k env frames" in text  # the seed of --out's runs
    assert main(argv) == 0
    assert "## Arms repeated over seeds" not in (report / "README.md").read_text()  # one seed per arm: no section


def test_the_report_is_written_again_from_its_records_once_the_runs_are_gone(tmp_path: Path) -> None:
    _finished_arm(tmp_path / "seed0" / "squash", det=[1.0, 2.0, 3.0], sampled=[10.0, 10.0, 10.0])
    (tmp_path / "seed0" / "squash" / "model.zip").write_bytes(b"weights")
    (tmp_path / "seed0" / "fs4").mkdir()  # not finished: no records
    _finished_arm(tmp_path / "seed1" / "squash", det=[4.0, 4.0, 4.0], sampled=[10.0, 10.0, 10.0], seed=1)
    report = tmp_path / "reports" / "recipe"
    argv = ["--arms", "squash,fs4", "--report", str(report)]
    assert main([*argv, "--out", str(tmp_path / "seed0"), "--seed-outs", str(tmp_path / "seed1")]) == 0
    first = (report / "README.md").read_text()
    records = report / "records"
    assert sorted(p.name for p in (records / "seed0" / "squash").iterdir()) == sorted(ARM_RECORDS)
    assert sorted(p.name for p in records.iterdir()) == ["seed0", "seed1", STUDY_FILE]
    assert not (records / "seed0" / "fs4").exists()
    study = json.loads((records / STUDY_FILE).read_text())
    assert study == {"out": "seed0", "seed_outs": ["seed1"], "arms": ["squash", "fs4"]}
    shutil.rmtree(tmp_path / "seed0"), shutil.rmtree(tmp_path / "seed1")
    assert main([*argv, "--out", str(records / "seed0"), "--seed-outs", str(records / "seed1")]) == 0
    assert (report / "README.md").read_text() == first
    assert "| `squash` | 2 | 2.0 (seed 0), 4.0 (seed 1) |" in first


def test_an_arm_whose_vae_is_missing_is_skipped_with_the_reason(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the arm's VAE path is relative: nothing there
    assert main(["--out", "runs", "--arms", "vae-agent"]) == 1
    assert f"arm vae-agent: its VAE {arm_named('vae-agent').vae} is not finished yet" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_arm_whose_vae_is_still_training_is_skipped(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    checkpoint = Path(arm_named("vae-agent").vae)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"after epoch 1")  # train-vae writes best.safetensors before it finishes
    assert main(["--out", "study", "--arms", "vae-agent"]) == 1
    assert "arm vae-agent: its VAE" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()
    (checkpoint.parent / "summary.json").write_text("{}")
    assert vae_finished(checkpoint)


@pytest.mark.parametrize("name", ["tqc-lin", "tqc-cos"])
def test_tqc_schedule_arms_decay_the_learning_rate_from_the_presets_value_to_zero(name: str) -> None:
    from agents.hyperparams import algo_kwargs_for_sb3

    schedule = algo_kwargs_for_sb3(hyperparams(arm_named(name)))["learning_rate"]
    assert schedule(1.0) == pytest.approx(7.3e-4)
    assert 0.0 < schedule(0.5) < 7.3e-4
    assert schedule(0.0) == pytest.approx(0.0)


def test_an_override_of_none_drops_the_base_key() -> None:
    assert "tau" in hyperparams(arm_named("tqc"))
    assert "tau" not in hyperparams(arm_named("crossq"))
