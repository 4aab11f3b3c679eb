"""Search spaces: what is sampled, fixed or left to --hyperparams, and the preset keys the values become."""

from __future__ import annotations

import optuna
import pytest
import yaml

from agents.hyperparams import algo_kwargs_for_sb3, resolve_hyperparams
from agents.search_spaces import SPACES, search_space


def sample(algo: str, *, continuous: bool = True, fixed=None, given=None, seed: int = 0) -> dict:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return search_space(algo, continuous=continuous).sample(study.ask(), fixed or {}, given or {})


@pytest.mark.parametrize("algo", sorted(SPACES))
def test_every_space_samples_wrapper_factors_and_presets_the_algorithm_takes(tmp_path, algo):
    pytest.importorskip("sb3_contrib") if algo in ("tqc", "recurrentppo") else None
    for seed in range(5):
        values = sample(algo, seed=seed)
        assert {"frame_skip", "latent_history", "include_action", "learning_rate"} <= set(values)
        preset = search_space(algo, continuous=True).to_preset(values, n_envs=2)
        path = tmp_path / f"{algo}{seed}.yml"
        path.write_text(yaml.safe_dump({"default": preset}))
        hp = resolve_hyperparams(algo, "worldmodel/DotTargetContinuous-v0", user_file=path)  # refuses unknown keys
        algo_kwargs_for_sb3(hp.algo_kwargs)
        assert (hp.frame_skip, hp.latent_history, hp.include_action) == tuple(
            values[k] for k in ("frame_skip", "latent_history", "include_action")
        )


def test_fixed_values_are_used_and_given_keys_are_not_sampled():
    values = sample("ppo", fixed={"frame_skip": 2, "use_sde": True}, given={"learning_rate": 1e-4, "gamma": 0.9})
    assert values["frame_skip"] == 2 and values["use_sde"] is True
    assert "learning_rate" not in values and "lr_schedule" not in values and "gamma" not in values
    assert "squash_output" in values  # sampled only with gSDE
    assert "squash_output" not in sample("ppo", fixed={"use_sde": False, "squash_output": True})


def test_discrete_actions_get_no_gsde():
    names = search_space("ppo", continuous=False).names()
    assert "use_sde" not in names and "log_std_init" not in names and "squash_output" not in names
    assert "lstm_hidden_size" in search_space("recurrentppo", continuous=False).names()


def test_values_become_preset_keys():
    ppo = search_space("ppo", continuous=True)
    values = {"learning_rate": 1e-3, "lr_schedule": "constant", "n_steps": 64, "batch_size": 32, "net_width": 64,
              "use_sde": True, "squash_output": True, "log_std_init": -2.0}  # fmt: skip
    assert ppo.to_preset(values, n_envs=4) == {
        "learning_rate": 1e-3,
        "n_steps": 64,
        "batch_size": 32,
        "use_sde": True,
        "policy_kwargs": {"net_arch": [64, 64], "squash_output": True, "log_std_init": -2.0},
    }
    sac = search_space("sac", continuous=True)
    assert sac.to_preset({"train_freq": 8}, n_envs=1) == {"train_freq": 8, "gradient_steps": 8}
    # the width fills the preset's layout: one layer per head stays one layer per head
    layout = {"pi": [256], "vf": [256]}
    assert ppo.to_preset({"net_width": 64}, n_envs=1, net_arch=layout) == {
        "policy_kwargs": {"net_arch": {"pi": [64], "vf": [64]}}
    }
    assert ppo.values_of({"policy_kwargs": {"net_arch": layout}}) == {"net_width": 256}


@pytest.mark.parametrize("algo", sorted(SPACES))
def test_a_preset_reads_back_the_values_it_was_made_of(algo):
    space = search_space(algo, continuous=True)
    for seed in range(5):
        values = sample(algo, seed=seed)
        preset = space.to_preset(values, n_envs=2048)  # no batch cap: every value survives the trip
        preset |= {k: values[k] for k in ("frame_skip", "latent_history", "include_action")}
        assert space.values_of(preset) == values


def test_preset_values_outside_the_space_are_left_to_the_sampler():
    ppo = search_space("ppo", continuous=True)
    preset = {"ent_coef": 0.0, "gamma": 0.97, "n_steps": 100, "frame_skip": True, "gae_lambda": 1,
              "policy_kwargs": {"net_arch": {"pi": [256], "vf": [128]}, "squash_output": True}}  # fmt: skip
    assert ppo.values_of(preset) == {"gae_lambda": 1, "squash_output": True}  # 1 is the choice 1.0, True is no 1
    assert search_space("sac", continuous=True).values_of({"train_freq": 4, "gradient_steps": 8}) == {}


def test_restrict_keeps_the_choices_that_fit_and_drops_a_parameter_with_none():
    ppo = search_space("ppo", continuous=False)
    assert ppo.restrict("n_steps", lambda n: n <= 128).param("n_steps").choices == (64, 128)
    assert "n_steps" not in ppo.restrict("n_steps", lambda n: False).names()
    with pytest.raises(ValueError, match="search spaces for ppo, recurrentppo, sac, tqc, not 'a2c'"):
        search_space("a2c", continuous=False)
