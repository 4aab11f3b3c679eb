import numpy as np
import pytest
from gymnasium import spaces

from envs.latent.history import LatentHistory


def test_stacks_oldest_first_and_resets_only_masked_envs():
    history = LatentHistory(num_envs=2, latent_dim=2, history=3)
    obs = history.reset(np.array([[1.0, 1.0], [2.0, 2.0]]))
    np.testing.assert_array_equal(obs[0], [1, 1, 1, 1, 1, 1])
    obs = history.push(np.array([[3.0, 3.0], [4.0, 4.0]]))
    np.testing.assert_array_equal(obs, [[1, 1, 1, 1, 3, 3], [2, 2, 2, 2, 4, 4]])
    obs = history.reset(np.array([[5.0, 5.0], [6.0, 6.0]]), mask=np.array([False, True]))
    np.testing.assert_array_equal(obs, [[1, 1, 1, 1, 3, 3], [6, 6, 6, 6, 6, 6]])
    obs[:] = 0  # a copy: the history is unaffected
    np.testing.assert_array_equal(history.push(np.zeros((2, 2)))[0], [1, 1, 3, 3, 0, 0])


def test_previous_action_box_and_discrete():
    box = LatentHistory(1, 1, action_space=spaces.Box(-1, 1, (2,), np.float32))
    assert box.observation_space.shape == (3,)
    np.testing.assert_array_equal(box.push(np.ones((1, 1)), np.array([[0.5, -0.5]])), [[1, 0.5, -0.5]])
    np.testing.assert_array_equal(box.reset(np.ones((1, 1))), [[1, 0, 0]])
    discrete = LatentHistory(2, 1, action_space=spaces.Discrete(3))
    np.testing.assert_array_equal(discrete.push(np.zeros((2, 1)), np.array([2, 0]))[:, 1:], [[0, 0, 1], [1, 0, 0]])


def test_history_must_be_positive():
    with pytest.raises(ValueError, match="history must be a positive integer"):
        LatentHistory(1, 4, history=0)
