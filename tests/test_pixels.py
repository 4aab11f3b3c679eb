import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.pixels import PixelObservation, is_image_space


def test_image_env_passes_through():
    env = PixelObservation(gym.make("worldmodel/DotTarget-v0"))
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and "state" in info  # the toy env's own state
    assert not env.from_render


def test_vector_env_uses_render_and_keeps_state():
    env = PixelObservation(gym.make("Pendulum-v1", render_mode="rgb_array"))
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == env.observation_space.shape
    assert info["state"].shape == (3,)
    obs2, *_, info2 = env.step(np.array([1.0], dtype=np.float32))
    assert obs2.shape == obs.shape and not np.array_equal(info2["state"], info["state"])


def test_missing_render_mode_is_a_clear_error():
    with pytest.raises(ValueError, match=r"CartPole-v1.*render_mode=None.*render_mode='rgb_array'"):
        PixelObservation(gym.make("CartPole-v1"))


def test_is_image_space():
    assert is_image_space(gym.spaces.Box(0, 255, (8, 8, 3), np.uint8))
    assert is_image_space(gym.spaces.Box(0, 255, (8, 8), np.uint8))
    assert not is_image_space(gym.spaces.Box(0, 1, (8, 8, 3), np.float32))
    assert not is_image_space(gym.spaces.Box(-1, 1, (4,), np.float32))
