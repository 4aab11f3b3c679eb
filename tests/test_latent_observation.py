import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401
from envs.frame_wrapper import FrameSpecObservation
from envs.latent.gymnasium_env import LatentObservation
from envs.latent.spec import LatentSpec
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.encoder import LatentEncoder

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:.*(infinity|different from the unwrapped|symmetric and normalized).*"),
]


def make_toy(max_episode_steps=100):
    return gym.make("worldmodel/DotTarget-v0", max_episode_steps=max_episode_steps)


def make_pendulum():
    return gym.make("Pendulum-v1", render_mode="rgb_array")


@pytest.mark.parametrize("make", [make_toy, make_pendulum], ids=["image-obs", "render"])
@pytest.mark.parametrize("latent", ["mean", "sample"])
def test_env_checkers_pass(toy_vae_path, make, latent):
    env = LatentObservation(
        make(), LatentSpec(toy_vae_path, device="cpu", latent=latent, history=2, include_action=True)
    )
    check_env(env, skip_render_check=True)
    sb3_check_env(env)


def test_latent_is_the_encoding_of_the_preprocessed_frame(toy_vae_path):
    env = LatentObservation(make_pendulum(), LatentSpec(toy_vae_path, device="cpu"))
    obs, info = env.reset(seed=0)
    assert "state" in info  # the render-based env keeps its vector observation
    spec = load_vae(toy_vae_path).frame_spec
    expected = env.encoder.encode(spec.apply(env.unwrapped.render())[None])[0]
    np.testing.assert_allclose(obs, expected, atol=1e-6)
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)


def test_rebuilt_from_recorded_constructor_args(toy_vae_path):
    env = LatentObservation(make_pendulum(), LatentSpec(toy_vae_path, device="cpu", history=2))
    rebuilt = gym.make(env.spec)
    np.testing.assert_array_equal(env.reset(seed=4)[0], rebuilt.reset(seed=4)[0])
    action = np.array([0.5], dtype=np.float32)
    np.testing.assert_array_equal(env.step(action)[0], rebuilt.step(action)[0])


def test_sample_is_reproducible_under_reset_seed(toy_vae_path):
    env = LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu", latent="sample"))

    def rollout(seed):
        out = [env.reset(seed=seed)[0]]
        out += [env.step(1)[0] for _ in range(5)]
        return np.stack(out)

    first = rollout(0)
    np.testing.assert_array_equal(first, rollout(0))
    assert not np.allclose(first, rollout(1))
    mean_env = LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu"))
    assert not np.allclose(first[0], mean_env.reset(seed=0)[0])


def test_history_and_action_reset_at_episode_boundaries(toy_vae_path):
    d, k = 6, 3
    env = LatentObservation(
        make_toy(max_episode_steps=4), LatentSpec(toy_vae_path, device="cpu", history=k, include_action=True)
    )
    assert env.observation_space.shape == (k * d + 5,)
    obs, _ = env.reset(seed=0)
    first = obs[:d]
    np.testing.assert_array_equal(obs[: k * d], np.tile(first, k))
    np.testing.assert_array_equal(obs[k * d :], 0)
    for _ in range(4):
        previous = obs
        obs, _, terminated, truncated, _ = env.step(2)
        np.testing.assert_array_equal(obs[: (k - 1) * d], previous[d : k * d])  # shifted by one latent
        np.testing.assert_array_equal(obs[k * d :], np.eye(5)[2])  # previous action, one-hot
        assert not np.allclose(obs[(k - 1) * d : k * d], previous[(k - 1) * d : k * d])
    assert truncated and not terminated  # after exactly 4 steps
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[: k * d], np.tile(obs[:d], k))
    np.testing.assert_array_equal(obs[k * d :], 0)
    assert not np.allclose(obs[:d], first)


def test_normalize_and_drop_inactive_use_checkpoint_stats(toy_vae_path):
    stats = load_vae(toy_vae_path).latent_stats
    raw = LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu")).reset(seed=0)[0]
    env = LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu", normalize=True, drop_inactive=True))
    assert env.observation_space.shape == (int(stats.active.sum()),)
    expected = ((raw - stats.mean) / stats.std)[stats.active]
    np.testing.assert_allclose(env.reset(seed=0)[0], expected, rtol=1e-5, atol=1e-6)


def test_env_without_pixels_is_a_clear_error(toy_vae_path):
    with pytest.raises(ValueError, match=r"CartPole-v1.*render_mode='rgb_array'"):
        LatentObservation(gym.make("CartPole-v1"), LatentSpec(toy_vae_path, device="cpu"))


def test_checkpoint_for_other_channels_is_a_clear_error(toy_vae_path):
    env = gym.wrappers.GrayscaleObservation(make_toy(), keep_dim=True)
    with pytest.raises(ValueError, match=r"frames of shape \(64, 64, 1\).*\(32, 32, 3\).*1 channel"):
        LatentObservation(env, LatentSpec(toy_vae_path, device="cpu"))


def test_env_resized_for_another_vae_is_a_clear_error(toy_vae_path):
    env = FrameSpecObservation(make_toy(), {"height": 16, "width": 16})
    with pytest.raises(ValueError, match=r"height=16.*\(16, 16, 3\).*expects frames made by.*\(32, 32, 3\)"):
        LatentObservation(env, LatentSpec(toy_vae_path, device="cpu"))


def test_env_resized_for_this_vae_is_not_resized_again(toy_vae_path):
    env = LatentObservation(FrameSpecObservation(make_toy(), toy_vae_path), LatentSpec(toy_vae_path, device="cpu"))
    plain = LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu"))
    assert not env.encoded.frame_latents.preprocess and plain.encoded.frame_latents.preprocess
    np.testing.assert_array_equal(env.reset(seed=1)[0], plain.reset(seed=1)[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_clear_error(toy_vae_path):
    with pytest.raises(ValueError, match=r"'cuda' requested but CUDA is not available"):
        LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cuda"))


class FloatFramesAfter(gym.ObservationWrapper):
    """Returns float frames (a bug in some env) from the given step on."""

    def __init__(self, env, step):
        super().__init__(env)
        self.steps, self.bad_from = 0, step

    def reset(self, **kwargs):
        self.steps = 0
        return super().reset(**kwargs)

    def step(self, action):
        self.steps += 1
        return super().step(action)

    def observation(self, observation):
        return observation.astype(np.float32) if self.steps >= self.bad_from else observation


def test_wrong_frame_dtype_mid_episode_is_a_clear_error(toy_vae_path):
    env = LatentObservation(FloatFramesAfter(make_toy(), step=3), LatentSpec(toy_vae_path, device="cpu"))
    env.reset(seed=0)
    env.step(0)
    env.step(0)
    with pytest.raises(ValueError, match=r"frames of dtype float32.*expected uint8"):
        env.step(0)


def test_a_shared_encoder_is_reused_and_its_options_are_fixed(toy_vae_path):
    encoder = LatentEncoder(toy_vae_path, device="cpu")
    first = LatentObservation(make_toy(), encoder)
    second = LatentObservation(make_toy(), LatentSpec(encoder, history=2))
    assert first.encoder is second.encoder is encoder
    plain = LatentObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu"))
    np.testing.assert_array_equal(first.reset(seed=2)[0], plain.reset(seed=2)[0])
    with pytest.raises(ValueError, match=r"\{'latent': 'sample'\} cannot change an existing LatentEncoder"):
        LatentObservation(make_toy(), LatentSpec(encoder, latent="sample"))
