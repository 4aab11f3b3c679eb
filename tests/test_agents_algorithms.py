"""The algorithm registry and its action-space checks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from agents.algorithms import ALGORITHMS, check_action_space, get_algorithm, installed_algorithms

BOX = spaces.Box(-1.0, 1.0, (2,))
DISCRETE = spaces.Discrete(5)


def test_unknown_algorithm_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown algorithm 'ppg'.*a2c.*ppo.*sac"):
        get_algorithm("ppg")


def test_names_are_case_insensitive_and_aliases_resolve():
    assert get_algorithm("PPO").class_name == "PPO"
    assert get_algorithm("ppo_lstm").name == "recurrentppo"


def test_contrib_algorithms_load_when_installed():
    pytest.importorskip("sb3_contrib")
    assert {"tqc", "recurrentppo", "qrdqn"} <= set(installed_algorithms())
    assert get_algorithm("tqc").load_class().__name__ == "TQC"


def test_dqn_on_continuous_points_to_the_discrete_variant():
    with pytest.raises(ValueError, match=r"dqn needs discrete actions.*worldmodel/DotTarget-v0"):
        check_action_space("dqn", BOX, "worldmodel/DotTargetContinuous-v0")
    with pytest.raises(ValueError, match=r'"continuous": false'):
        check_action_space("dqn", spaces.Box(-1.0, 1.0, (3,)), "CarRacing-v3")


def test_continuous_algorithm_on_discrete_points_to_the_continuous_variant():
    with pytest.raises(ValueError, match=r"sac needs continuous actions.*DotTargetContinuous-v0.*dqn"):
        check_action_space("sac", DISCRETE, "worldmodel/DotTarget-v0")


def test_unknown_env_gets_the_fitting_algorithms_only():
    with pytest.raises(ValueError) as info:
        check_action_space("td3", DISCRETE, "Some-v0")
    assert "variant" not in str(info.value) and "ppo" in str(info.value) and "sac" not in str(info.value)


SPACES = {
    spaces.Box: BOX,
    spaces.Discrete: DISCRETE,
    spaces.MultiDiscrete: spaces.MultiDiscrete([3, 2]),
    spaces.MultiBinary: spaces.MultiBinary(3),
}


class _ActionSpaceEnv(gym.Env):
    """A 4-d observation, any action space: what an algorithm is built on."""

    observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)

    def __init__(self, action_space: spaces.Space) -> None:
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 0.0, False, False, {}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_accepts_a_space_it_declares(name):
    spec = get_algorithm(name)
    if spec.contrib:
        pytest.importorskip("sb3_contrib")
    assert spec.action_spaces and set(spec.action_spaces) <= set(SPACES)
    algorithm = spec.load_class()
    policy = "MlpLstmPolicy" if spec.recurrent else "MlpPolicy"
    obs = np.array([[0.5, -0.5, 0.25, 0.0]], np.float32)
    for kind in spec.action_spaces:
        space = SPACES[kind]
        assert check_action_space(spec, space, "Some-v0") is None
        # SB3 itself agrees: it builds the model (its constructor refuses spaces it does not support)
        model = algorithm(policy, _ActionSpaceEnv(space), seed=0, device="cpu")
        assert model.action_space == space
        action, _ = model.predict(obs, deterministic=True)
        assert space.contains(action[0].astype(space.dtype)), f"{name} acted {action[0]} outside {space}"
    for kind in set(SPACES) - set(spec.action_spaces):  # what it does not declare, SB3 refuses too
        with pytest.raises(ValueError, match=f"{spec.name} needs"):
            check_action_space(spec, SPACES[kind], "Some-v0")
        with pytest.raises(AssertionError, match="only supports"):
            algorithm(policy, _ActionSpaceEnv(SPACES[kind]), seed=0, device="cpu")
