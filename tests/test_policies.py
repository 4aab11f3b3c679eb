import numpy as np
import pytest
from gymnasium import spaces

from envs.policies import BrownianPolicy, RandomPolicy, policy_factory

BOX = spaces.Box(np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32))


def rollout(policy, seed, steps=200):
    policy.reset(seed)
    return np.array([policy(None, {}) for _ in range(steps)])


@pytest.mark.parametrize("factory", [RandomPolicy, BrownianPolicy])
def test_seeded_reproducible_and_in_bounds(factory):
    policy = factory(BOX)
    a, b, c = rollout(policy, 3), rollout(policy, 3), rollout(policy, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and all(BOX.contains(x) for x in a)


def test_brownian_is_temporally_correlated():
    random_steps = np.abs(np.diff(rollout(RandomPolicy(BOX), 0), axis=0)).mean()
    brownian = rollout(BrownianPolicy(BOX), 0)
    brownian_steps = np.abs(np.diff(brownian, axis=0)).mean()
    assert brownian_steps < 0.3 * random_steps
    assert brownian.std(axis=0).min() > 0.05  # it does wander


def test_random_policy_on_discrete_and_brownian_refuses_it():
    actions = rollout(RandomPolicy(spaces.Discrete(5)), 0)
    assert set(actions.tolist()) == set(range(5))
    with pytest.raises(ValueError, match=r"bounded Box.*random policy"):
        BrownianPolicy(spaces.Discrete(5))


def test_unknown_policy_name():
    assert policy_factory("brownian") is BrownianPolicy
    with pytest.raises(ValueError, match=r"unknown policy 'agent'.*\['brownian', 'random'\]"):
        policy_factory("agent")
