"""Preset resolution, user YAML files, SB3 conversion and the replay-buffer budget."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from agents.algorithms import ALGORITHMS, get_algorithm
from agents.hyperparams import (
    PRESETS_DIR,
    algo_kwargs_for_sb3,
    check_replay_memory,
    load_yaml_file,
    parse_policy_kwargs,
    resolve_hyperparams,
)

ENV_IDS = ["CarRacing-v3", "worldmodel/DotTarget-v0", "worldmodel/DotTargetContinuous-v0", "Pendulum-v1"]


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_preset_resolves_for_every_env_and_mode(algo):
    pytest.importorskip("sb3_contrib") if get_algorithm(algo).contrib else None
    for env_id in ENV_IDS:
        for pixels in (False, True):
            hp = resolve_hyperparams(algo, env_id, pixels=pixels)
            algo_kwargs_for_sb3(hp.algo_kwargs)
            assert hp.n_envs >= 1 and hp.n_timesteps > 0


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_carracing_preset_entry_resolves_for_latents_and_pixels(preset):
    pytest.importorskip("sb3_contrib") if get_algorithm(preset).contrib else None
    if "CarRacing-v3" not in load_yaml_file(PRESETS_DIR / f"{preset}.yaml"):
        pytest.skip(f"{preset}.yaml has no CarRacing-v3 entry")
    for pixels in (False, True):
        hp = resolve_hyperparams(preset, "CarRacing-v3", pixels=pixels)
        algo_kwargs_for_sb3(hp.algo_kwargs)
        assert hp.policy.startswith("Cnn" if pixels else "Mlp") and hp.n_timesteps > 0


def test_presets_carry_the_observation_recipe_and_the_command_line_overrides_it(tmp_path):
    default = resolve_hyperparams("ppo", "worldmodel/DotTarget-v0")
    assert (default.latent_history, default.include_action) == (1, False)
    path = tmp_path / "ppo.yml"
    path.write_text("worldmodel/DotTarget-v0:\n  latent_history: 4\n  include_action: true\n  frame_skip: 2\n")
    hp = resolve_hyperparams("ppo", "worldmodel/DotTarget-v0", user_file=path)
    assert (hp.latent_history, hp.include_action, hp.frame_skip) == (4, True, 2)
    assert "latent_history" not in hp.algo_kwargs and "include_action" not in hp.algo_kwargs
    overrides = {"latent_history": 2, "include_action": False}
    hp = resolve_hyperparams("ppo", "worldmodel/DotTarget-v0", user_file=path, overrides=overrides)
    assert (hp.latent_history, hp.include_action) == (2, False)


def test_carracing_and_toy_presets_exist_and_differ_from_the_default():
    default = resolve_hyperparams("ppo", "Unknown-v0")
    for env_id in ENV_IDS[:3]:
        assert resolve_hyperparams("ppo", env_id) != default


def test_pixel_mode_follows_the_rl_zoo_carracing_recipe():
    hp = resolve_hyperparams("ppo", "CarRacing-v3", pixels=True)
    assert (hp.policy, hp.frame_skip, hp.frame_stack) == ("CnnPolicy", 2, 2)
    assert hp.frame_spec == {"height": 64, "width": 64, "grayscale": True}
    latent = resolve_hyperparams("ppo", "CarRacing-v3")
    assert latent.policy == "MlpPolicy" and latent.frame_spec is None and latent.frame_stack == 1


def test_user_file_overrides_the_preset_and_command_line_overrides_both(tmp_path):
    path = tmp_path / "ppo.yml"
    path.write_text("default:\n  n_envs: 3\nworldmodel/DotTarget-v0:\n  learning_rate: 5.0e-4\n  n_steps: 64\n")
    hp = resolve_hyperparams("ppo", "worldmodel/DotTarget-v0", user_file=path, overrides={"n_envs": 2})
    assert hp.n_envs == 2
    assert hp.algo_kwargs["learning_rate"] == 5.0e-4 and hp.algo_kwargs["n_steps"] == 64
    assert resolve_hyperparams("ppo", "Other-v0", user_file=path).n_envs == 3


def test_unknown_hyperparameter_names_the_valid_ones(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("default:\n  learning_rat: 0.1\n")
    with pytest.raises(ValueError, match=r"does not take hyperparameters \['learning_rat'\].*learning_rate"):
        resolve_hyperparams("ppo", "worldmodel/DotTarget-v0", user_file=path)


def test_malformed_file_is_a_clear_error(tmp_path):
    path = tmp_path / "flat.yml"
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="must map env ids"):
        resolve_hyperparams("ppo", "worldmodel/DotTarget-v0", user_file=path)


def test_schedules_and_zoo_policy_kwargs_convert_without_eval():
    kwargs = algo_kwargs_for_sb3(
        {
            "learning_rate": "lin_1e-3",
            "policy_kwargs": "dict(net_arch=[32], activation_fn=nn.GELU)",
            "train_freq": [1, "episode"],
        }
    )
    assert isinstance(kwargs["learning_rate"], LinearSchedule)
    assert kwargs["learning_rate"](1.0) == pytest.approx(1e-3) and kwargs["learning_rate"](0.0) == 0.0
    assert kwargs["policy_kwargs"] == {"net_arch": [32], "activation_fn": nn.GELU}
    assert kwargs["train_freq"] == (1, "episode")
    with pytest.raises(ValueError, match="cannot read"):
        parse_policy_kwargs("dict(activation_fn=__import__('os').system)")


def test_replay_buffers_must_fit_the_budget():
    sac = get_algorithm("sac")
    pixels = spaces.Box(0, 255, (2, 64, 64), np.uint8)
    actions = spaces.Box(-1.0, 1.0, (3,))
    with pytest.raises(ValueError, match=r"needs .* GiB, over the 24 GiB budget; set buffer_size to at most"):
        check_replay_memory({"buffer_size": 2_000_000}, sac, pixels, actions)
    check_replay_memory({"buffer_size": 100_000}, sac, pixels, actions)
    for algo in ("sac", "td3", "dqn"):
        hp = resolve_hyperparams(algo, "CarRacing-v3", pixels=True)
        check_replay_memory(hp.algo_kwargs, get_algorithm(algo), pixels, actions)
