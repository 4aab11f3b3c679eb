"""worldmodel tune on the toy env: a study completes, resumes, retries a killed trial, prunes, and refuses bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import signal

import optuna
import pytest
import yaml
from filelock import FileLock

from agents import tune as tune_module
from agents.tune import BEST_FILE, STUDY_DB, TRIALS_CSV, TuneConfig, tune
from worldmodel.cli import main

TOY = "worldmodel/DotTargetContinuous-v0"
# The toy's smallest useful run: 1 env, 32-step rollouts, 128 frames per trial, one evaluation.
SMALL = {"n_envs": 1, "n_steps": 32, "batch_size": 32, "n_epochs": 1}


def small_config(tmp_path, vae: str, **changes) -> TuneConfig:
    recipe = tmp_path / "small.yml"
    if not recipe.exists():
        recipe.write_text(yaml.safe_dump({"default": SMALL}))
    fields = {
        "env_id": TOY,
        "vae": vae,
        "out": str(tmp_path / "study"),
        "n_trials": 2,
        "budget_frames": 128,
        "n_evaluations": 1,
        "eval_episodes": 1,
        "hyperparams": str(recipe),
        "device": "cpu",
    }
    return TuneConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, toy_vae_path):
    """A finished 2-trial study; tests that add trials work on a copy."""
    tmp_path = tmp_path_factory.mktemp("tune")
    tune(small_config(tmp_path, toy_vae_path))
    return tmp_path


def copy_study(study_dir, tmp_path):
    shutil.copytree(study_dir / "study", tmp_path / "study")
    shutil.copy(study_dir / "small.yml", tmp_path / "small.yml")
    return tmp_path


def load(out) -> optuna.Study:
    return optuna.load_study(study_name=None, storage=f"sqlite:///{out / STUDY_DB}")


def csv_rows(out) -> list[dict]:
    with open(out / TRIALS_CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_a_study_writes_the_best_recipe_and_the_trials(study_dir):
    out = study_dir / "study"
    study = load(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert all("sampled_mean_return" in t.user_attrs for t in study.trials)
    text = (out / BEST_FILE).read_text()
    assert f"study {study.study_name}" in text and "128 env frames per trial; 2 trials" in text
    assert f"best: trial {study.best_trial.number}, mean return {study.best_value:.2f}" in text
    recipe = yaml.safe_load(text)[TOY]
    assert {"frame_skip", "latent_history", "include_action", "learning_rate"} <= set(recipe)
    assert recipe["n_timesteps"] == 128 // recipe["frame_skip"] and recipe["n_steps"] == 32  # from --hyperparams
    assert [row["state"] for row in csv_rows(out)] == ["COMPLETE", "COMPLETE"]
    # trial 0 is the toy preset's own recipe (ppo.yaml: lr 1e-3 constant, gamma 0.98, net_arch [64, 64])
    first, second = study.trials
    assert first.user_attrs["from_preset"] is True and "from_preset" not in second.user_attrs
    preset = {"learning_rate": 1e-3, "lr_schedule": "constant", "gamma": 0.98, "net_width": 64, "latent_history": 1}
    assert {k: first.params[k] for k in preset} == preset
    assert (out / "trials" / "0" / "model.zip").is_file() and not (out / "trials" / "0" / "checkpoints").exists()


def test_best_yaml_trains_with_train_agent_and_carries_the_whole_recipe(study_dir, tmp_path, toy_vae_path):
    best = study_dir / "study" / BEST_FILE
    recipe = yaml.safe_load(best.read_text())[TOY]
    run = tmp_path / "run"
    argv = ["train-agent", TOY, "--vae", toy_vae_path, "--hyperparams", str(best), "--out", str(run), "--timesteps",
            "32", "--eval-freq", "0", "--no-progress-bar", "--no-tensorboard", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    stack = json.loads((run / "config.json").read_text())["stack"]
    assert (stack["frame_skip"], stack["latent_history"], stack["include_action"]) == (
        recipe["frame_skip"],
        recipe["latent_history"],
        recipe["include_action"],
    )


def test_rerunning_with_more_trials_adds_exactly_those_and_keeps_the_first(study_dir, tmp_path, toy_vae_path):
    copy_study(study_dir, tmp_path)
    before = load(tmp_path / "study").trials
    tune(small_config(tmp_path, toy_vae_path, n_trials=3))
    after = load(tmp_path / "study").trials
    assert len(after) == 3 and after[2].state.name == "COMPLETE"
    assert after[2].params not in [t.params for t in before]  # a new draw, not the first run's replayed
    assert "from_preset" not in after[2].user_attrs  # the preset is tried once per study
    assert [(t.params, t.value, t.datetime_complete) for t in after[:2]] == [
        (t.params, t.value, t.datetime_complete) for t in before
    ]
    assert len(csv_rows(tmp_path / "study")) == 3
    tune(small_config(tmp_path, toy_vae_path, n_trials=3))  # done: nothing runs
    assert len(load(tmp_path / "study").trials) == 3


def test_a_trial_left_running_by_a_killed_process_is_failed_and_retried(study_dir, tmp_path, toy_vae_path):
    copy_study(study_dir, tmp_path)
    study = optuna.load_study(study_name=None, storage=tune_module._storage(tmp_path / "study" / STUDY_DB))
    killed = study.ask({"frame_skip": optuna.distributions.CategoricalDistribution((1, 2, 4))})  # then its process died
    tune(small_config(tmp_path, toy_vae_path, n_trials=3))
    trials = load(tmp_path / "study").trials
    assert trials[killed.number].state.name == "FAIL"
    retry = trials[-1]
    assert retry.state.name == "COMPLETE" and retry.system_attrs["failed_trial"] == killed.number
    assert retry.params["frame_skip"] == killed.params["frame_skip"]
    assert [row["retried_trial"] for row in csv_rows(tmp_path / "study")][-1] == str(killed.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]  # retried once, no more


def test_an_interrupted_study_ends_with_the_trials_of_an_uninterrupted_one(tmp_path, toy_vae_path, monkeypatch):
    (tmp_path / "whole").mkdir()
    whole = tune(small_config(tmp_path / "whole", toy_vae_path, n_trials=3))
    real, calls = tune_module.train_agent, []

    def interrupted_once(agent, **kwargs):
        calls.append(agent.out)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second trial
        return real(agent, **kwargs)

    monkeypatch.setattr(tune_module, "train_agent", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        tune(small_config(tmp_path, toy_vae_path, n_trials=3))
    resumed = tune(small_config(tmp_path, toy_vae_path, n_trials=3))
    assert [t.state.name for t in resumed.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    ended = [t.params for t in resumed.trials if t.state.name == "COMPLETE"]
    assert ended == [t.params for t in whole.trials]
    assert ended[0] != ended[1] != ended[2]


def test_a_second_tune_on_the_same_study_is_refused(tmp_path, toy_vae_path, capsys):
    config = small_config(tmp_path, toy_vae_path)
    (tmp_path / "study").mkdir()
    with FileLock(tmp_path / "study" / "study.lock"):
        argv = ["tune", TOY, "--vae", toy_vae_path, "--out", config.out, "--hyperparams", config.hyperparams]
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "another `worldmodel tune` is working on" in err and "\n" not in err
    assert not (tmp_path / "study" / STUDY_DB).exists()


def test_a_full_disk_stops_the_study_in_one_line_and_the_rerun_retries_its_trial(tmp_path, toy_vae_path, capsys,
                                                                               monkeypatch):  # fmt: skip
    from worldmodel.common.atomic import DiskFullError

    config = small_config(tmp_path, toy_vae_path, n_trials=2)
    real = tune_module.train_agent
    calls = []

    def full_once(agent, **kwargs):
        calls.append(agent.out)
        if len(calls) == 2:
            raise DiskFullError(f"cannot write {agent.out}/model.zip: no space left on device; make room")
        return real(agent, **kwargs)

    monkeypatch.setattr(tune_module, "train_agent", full_once)
    argv = ["tune", TOY, "--vae", toy_vae_path, "--out", config.out, "--hyperparams", config.hyperparams,
            "--n-trials", "2", "--budget-frames", str(config.budget_frames), "--n-evaluations", "1",
            "--eval-episodes", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("worldmodel tune: error: cannot write") and "\n" not in err  # no Optuna traceback
    assert main(argv) == 0
    trials = load(tmp_path / "study").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params


def test_a_pruned_trial_stops_early_and_counts(tmp_path, toy_vae_path, monkeypatch, capsys):
    monkeypatch.setattr(tune_module, "make_pruner", lambda config: optuna.pruners.ThresholdPruner(lower=1e9))
    config = small_config(tmp_path, toy_vae_path, n_trials=1, n_evaluations=2, fixed=("frame_skip=1",))
    study = tune(config)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    assert json.loads((tmp_path / "study" / "trials" / "0" / "summary.json").read_text())["agent_steps"] < 128
    assert not (tmp_path / "study" / BEST_FILE).exists() and csv_rows(tmp_path / "study")[0]["state"] == "PRUNED"
    assert "no trial has completed yet" in tune_module.summary(study, config)


def test_a_trial_leaves_signals_alone_so_a_killed_study_retries_it(tmp_path, toy_vae_path, monkeypatch):
    handlers = []
    report = tune_module.TrialReporter._on_step

    def recording(self):
        handlers.append(signal.getsignal(signal.SIGTERM))
        return report(self)

    monkeypatch.setattr(tune_module.TrialReporter, "_on_step", recording)
    tune(small_config(tmp_path, toy_vae_path, n_trials=1, n_evaluations=2, fixed=("frame_skip=1",)))
    assert handlers == [signal.SIG_DFL, signal.SIG_DFL]  # train-agent's checkpoint-and-stop handler is not installed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "a2c"], "search spaces for ppo, recurrentppo, sac, tqc, not 'a2c'"),
        (["--budget-frames", "64"], "less than one rollout of 32 steps x 1 envs"),
        (["--fixed", "frame_skip=1", "n_stepz=64"], "--fixed n_stepz=64: expected NAME=VALUE"),
        (["--fixed", "frame_skip"], "--fixed frame_skip: expected NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, toy_vae_path, capsys, args, message):
    config = small_config(tmp_path, toy_vae_path)
    argv = ["tune", TOY, "--vae", toy_vae_path, "--out", config.out, "--hyperparams", config.hyperparams, *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("worldmodel tune: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "study").exists()


def test_an_out_holding_another_setups_study_is_refused(study_dir, tmp_path, toy_vae_path, capsys):
    copy_study(study_dir, tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    other_env = small_config(tmp_path, toy_vae_path, env_id="worldmodel/DotTarget-v0")
    with pytest.raises(tune_module.TuneError, match=f"holds the study .* env_id '{TOY}'"):
        tune(other_env)
    with pytest.raises(tune_module.TuneError, match=r"budget_frames 128 \(now 256\)"):
        tune(dataclasses.replace(small_config(tmp_path, toy_vae_path), budget_frames=256))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files


def test_the_preset_trial_holds_only_parameters_the_study_samples(tmp_path, toy_vae_path):
    given = tmp_path / "given.yml"  # sets net_arch (so net_width is not sampled) and n_steps
    given.write_text(yaml.safe_dump({TOY: {**SMALL, "policy_kwargs": {"net_arch": [64, 64]}}}))
    plan = tune_module.plan_study(small_config(tmp_path, toy_vae_path, hyperparams=str(given), fixed=("gamma=0.9",)))
    assert plan.preset_values == {"latent_history": 1, "include_action": False, "learning_rate": 1e-3,
                                  "lr_schedule": "constant"}  # fmt: skip


def test_a_trial_keeps_the_policy_keywords_of_the_preset_it_does_not_sample(tmp_path, toy_vae_path, monkeypatch):
    real = tune_module.resolve_hyperparams

    def preset_with_an_activation(*args, **kwargs):
        hp = real(*args, **kwargs)
        kwargs = {**hp.algo_kwargs, "policy_kwargs": "dict(activation_fn=nn.ReLU, ortho_init=False, net_arch=[8])"}
        return dataclasses.replace(hp, algo_kwargs=kwargs)

    monkeypatch.setattr(tune_module, "resolve_hyperparams", preset_with_an_activation)
    tune(small_config(tmp_path, toy_vae_path, n_trials=1))
    recipe = yaml.safe_load((tmp_path / "study" / "trials" / "0" / "recipe.yaml").read_text())[TOY]
    policy_kwargs = recipe["policy_kwargs"]
    assert policy_kwargs["activation_fn"] == "nn.ReLU" and policy_kwargs["ortho_init"] is False
    width = policy_kwargs["net_arch"][0]
    assert policy_kwargs["net_arch"] == [width] and width in (64, 128, 256)  # sampled, in the preset's one layer
    assert "log_std_init" in policy_kwargs and load(tmp_path / "study").trials[0].state.name == "COMPLETE"
