import pickle

import gymnasium as gym
import numpy as np
import pytest

from envs.config import EnvConfig, env_preset
from envs.factory import make_env, make_env_fn
from envs.frame_skip import FrameSkip

TOY = "worldmodel/DotTargetContinuous-v0"


class NoPixelsEnv(gym.Env):
    metadata = {"render_modes": ["human"]}
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode


gym.register("test/NoPixels-v0", entry_point=NoPixelsEnv)


def test_presets():
    car = env_preset("CarRacing-v3")
    assert car.skip_start_frames == 50 and car.frame_spec.shape == (64, 64, 3) and car.env_kwargs == {}
    other = env_preset("Pendulum-v1")
    assert other == EnvConfig("Pendulum-v1") and other.frame_skip == 1


def test_frame_skip_sums_rewards_and_counts_frames():
    base = make_env(TOY)
    skipped = make_env(env_preset(TOY).replace(frame_skip=3))
    base.reset(seed=1)
    _, info = skipped.reset(seed=1)
    assert info["frames"] == 0
    action = np.array([0.5, -0.25], np.float32)
    expected = sum(base.step(action)[1] for _ in range(3))
    obs, reward, *_, info = skipped.step(action)
    assert info["frames"] == 3 and reward == pytest.approx(expected)
    np.testing.assert_array_equal(obs, base.unwrapped._frame())


def test_frame_skip_stops_at_episode_end():
    env = FrameSkip(gym.make(TOY, max_episode_steps=4), 3)
    env.reset(seed=0)
    zero = np.zeros(2, np.float32)
    assert env.step(zero)[-1]["frames"] == 3
    *_, truncated, info = env.step(zero)
    assert truncated and info["frames"] == 1


def test_skip_start_frames_counts_and_steps():
    env = make_env(env_preset(TOY).replace(skip_start_frames=5, max_episode_steps=8))
    _, info = env.reset(seed=0)
    assert info["frames"] == 5
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(np.zeros(2, np.float32))
        steps += 1
    assert steps == 3  # the time limit counted the 5 skipped frames


def test_render_path_keeps_state():
    env = make_env("CartPole-v1")
    obs, info = env.reset(seed=0)
    assert obs.shape == (400, 600, 3) and obs.dtype == np.uint8 and info["state"].shape == (4,)
    assert env.get_wrapper_attr("render_mode") == "rgb_array"


def test_car_racing_preset_state_and_zoom_skip():
    env = make_env("CarRacing-v3")
    obs, info = env.reset(seed=0)
    assert obs.shape == (96, 96, 3) and info["frames"] == 50 and info["state"].shape == (4,)
    for _ in range(10):
        *_, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert info["state"][0] > 0.5  # speed grows under full gas


def test_clear_errors():
    with pytest.raises(ValueError, match=r"NoPixels-v0 has neither image observations .* nor an rgb_array render mode"):
        make_env("test/NoPixels-v0")
    with pytest.raises(gym.error.NameNotFound, match=r"Hint: .*pprint_registry"):
        make_env("NoSuchEnv-v0")


def test_atari_registers_ale():
    pytest.importorskip("ale_py")
    env = make_env("ALE/Pong-v5")
    assert env.reset(seed=0)[0].shape == (210, 160, 3)
    *_, info = env.step(0)
    assert info["frames"] == 4  # emulator frames, ALE's own frame skip moved into FrameSkip


def test_make_env_fn_is_picklable():
    fn = pickle.loads(pickle.dumps(make_env_fn(TOY)))
    assert fn.args[0] == env_preset(TOY)
