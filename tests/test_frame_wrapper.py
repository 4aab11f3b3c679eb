import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401
from envs.frame_wrapper import FrameSpecObservation
from envs.pixels import PixelObservation
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import CheckpointError, load_vae

pytestmark = pytest.mark.filterwarnings("ignore:.*(different from the unwrapped).*")


def test_applies_the_spec_to_every_frame():
    spec = FrameSpec(height=16, width=24, crop=(0, 8, 64, 64), grayscale=True)
    base = gym.make("worldmodel/DotTarget-v0")
    env = FrameSpecObservation(gym.make("worldmodel/DotTarget-v0"), spec.to_dict())
    assert env.frame_spec == spec and env.observation_space.shape == (16, 24, 1)
    np.testing.assert_array_equal(env.reset(seed=0)[0], spec.apply(base.reset(seed=0)[0]))
    np.testing.assert_array_equal(env.step(1)[0], spec.apply(base.step(1)[0]))
    check_env(env)


def test_spec_from_a_checkpoint_path_on_a_render_based_env(toy_vae_path):
    env = FrameSpecObservation(PixelObservation(gym.make("Pendulum-v1", render_mode="rgb_array")), toy_vae_path)
    assert env.frame_spec == load_vae(toy_vae_path).frame_spec
    assert env.reset(seed=0)[0].shape == (32, 32, 3)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"needs uint8 image observations.*PixelObservation"):
        FrameSpecObservation(gym.make("Pendulum-v1", render_mode="rgb_array"), FrameSpec())
    with pytest.raises(ValueError, match=r"crop box.*outside the 64x64"):
        FrameSpecObservation(gym.make("worldmodel/DotTarget-v0"), FrameSpec(crop=(0, 0, 84, 96)))


def test_spec_from_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes\.safetensors is not a readable safetensors file"):
        FrameSpecObservation(gym.make("worldmodel/DotTarget-v0"), bad)
