import functools

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecTransposeImage

import envs  # noqa: F401
from envs.frame_wrapper import FrameSpecObservation
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.latent.spec import LatentSpec
from envs.pixels import PixelObservation
from worldmodel.vae.checkpoint import load_vae

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOL = 1e-5
KWARGS = {"history": 2, "include_action": True}
# "envs:" makes gym.make import the envs package (and register the toy ids) in worker processes too.
make_toy = functools.partial(gym.make, "envs:worldmodel/DotTarget-v0", max_episode_steps=10)


def make_preprocessed_toy(vae_path):
    return FrameSpecObservation(make_toy(), vae_path)


def check_against_reference(venv, reference, steps):
    """Step ``venv`` with the reference actions; compare observations and terminal observations."""
    obs = venv.reset()
    np.testing.assert_allclose(obs, [run["reset"] for run in reference], atol=ATOL)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        expected = [run["steps"][t] for run in reference]
        obs, _, dones, infos = venv.step(np.array([step["action"] for step in expected]))
        for i, step in enumerate(expected):
            assert dones[i] == (step["next_reset"] is not None)
            if dones[i]:
                np.testing.assert_allclose(infos[i]["terminal_observation"], step["obs"], atol=ATOL)
                np.testing.assert_allclose(obs[i], step["next_reset"], atol=ATOL)
                ends["terminated" if step["terminated"] else "truncated"] += 1
            else:
                np.testing.assert_allclose(obs[i], step["obs"], atol=ATOL)
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends  # both kinds of episode end were checked


@pytest.mark.parametrize("preprocessed", [False, True], ids=["raw-frames", "frames-resized-in-sub-envs"])
def test_matches_loop_of_single_env_wrappers(toy_vae_path, latent_reference, preprocessed):
    steps, seed = 40, 3
    reference = latent_reference(make_toy, 4, steps, seed, **KWARGS)
    make = functools.partial(make_preprocessed_toy, toy_vae_path) if preprocessed else make_toy
    venv = VecLatentObservation(DummyVecEnv([make] * 4), LatentSpec(toy_vae_path, device="cpu", **KWARGS))
    assert venv.encoded.frame_latents.preprocess is not preprocessed
    venv.seed(seed)
    check_against_reference(venv, reference, steps)
    # The untrained VAE still separates frames far beyond the tolerance, so the comparison has teeth.
    assert np.abs(reference[0]["steps"][1]["obs"] - reference[0]["steps"][0]["obs"]).max() > 100 * ATOL


def test_subproc_vec_env_matches_reference(toy_vae_path, latent_reference):
    steps, seed = 30, 5
    reference = latent_reference(make_toy, 2, steps, seed)
    fns = [functools.partial(make_preprocessed_toy, toy_vae_path)] * 2
    venv = VecLatentObservation(SubprocVecEnv(fns), LatentSpec(toy_vae_path, device="cpu"))
    try:
        venv.seed(seed)
        check_against_reference(venv, reference, steps)
    finally:
        venv.close()


def test_render_based_sub_envs(toy_vae_path):
    def make():
        return PixelObservation(gym.make("Pendulum-v1", render_mode="rgb_array"))

    spec = load_vae(toy_vae_path).frame_spec
    venv = VecLatentObservation(DummyVecEnv([make] * 2), LatentSpec(toy_vae_path, device="cpu"))
    obs = venv.reset()
    assert obs.shape == (2, 6) and obs.dtype == np.float32
    frames = venv.venv.get_images()
    expected = venv.encoder.encode(np.stack([spec.apply(f) for f in frames]))
    np.testing.assert_allclose(obs, expected, atol=ATOL)


def test_sample_is_reproducible_under_seed(toy_vae_path):
    def rollout(seed):
        venv = VecLatentObservation(
            DummyVecEnv([make_toy] * 2), LatentSpec(toy_vae_path, device="cpu", latent="sample")
        )
        venv.seed(seed)
        out = [venv.reset()]
        for _ in range(10):
            out.append(venv.step(np.array([1, 2]))[0])
        return np.stack(out)

    np.testing.assert_array_equal(rollout(1), rollout(1))
    assert not np.allclose(rollout(1), rollout(2))


def test_non_image_observations_are_rejected(toy_vae_path):
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(ValueError, match=r"needs uint8 HWC image observations.*PixelObservation"):
        VecLatentObservation(venv, LatentSpec(toy_vae_path, device="cpu"))


def test_sub_envs_resized_for_another_vae_are_rejected(toy_vae_path):
    venv = DummyVecEnv([lambda: FrameSpecObservation(make_toy(), {"height": 16, "width": 16})])
    with pytest.raises(ValueError, match=r"height=16.*expects frames made by.*height=32"):
        VecLatentObservation(venv, LatentSpec(toy_vae_path, device="cpu"))


def test_ppo_learns_with_mlp_policy_and_no_transpose(toy_vae_path):
    venv = VecLatentObservation(DummyVecEnv([make_toy] * 2), LatentSpec(toy_vae_path, device="cpu", **KWARGS))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, device="cpu", seed=0)
    model.learn(64)
    assert not isinstance(model.get_env(), VecTransposeImage)
    assert model.observation_space == venv.observation_space


@pytest.mark.parametrize(
    ("algo", "env_id"), [(DQN, "worldmodel/DotTarget-v0"), (SAC, "worldmodel/DotTargetContinuous-v0")]
)
def test_off_policy_algorithms_learn_and_store_latent_terminal_observations(toy_vae_path, algo, env_id):
    make = functools.partial(gym.make, env_id, max_episode_steps=10)
    venv = VecLatentObservation(DummyVecEnv([make] * 2), LatentSpec(toy_vae_path, device="cpu", **KWARGS))
    model = algo("MlpPolicy", venv, learning_starts=50, buffer_size=1000, batch_size=32, device="cpu", seed=0)
    model.learn(300)
    buffer = model.replay_buffer
    assert buffer.size() >= 150  # 300 transitions over 2 envs
    assert buffer.next_observations.shape[1:] == (2, *venv.observation_space.shape)
    assert np.isfinite(buffer.next_observations[: buffer.size()]).all()
