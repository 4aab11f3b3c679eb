import functools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

import envs  # noqa: F401
from envs.frame_wrapper import FrameSpecObservation
from envs.latent.gymnasium_vector import VectorLatentObservation
from envs.latent.spec import LatentSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOL = 1e-5
KWARGS = {"history": 2, "include_action": True}
make_toy = functools.partial(gym.make, "worldmodel/DotTarget-v0", max_episode_steps=10)


def test_next_step_autoreset_matches_loop_of_single_env_wrappers(toy_vae_path, latent_reference):
    """Gymnasium's default mode: the step after an episode end is a reset step (action ignored)."""
    steps, seed, n = 40, 3, 4
    reference = latent_reference(make_toy, n, steps, seed, **KWARGS)
    vector_env = VectorLatentObservation(
        SyncVectorEnv([make_toy] * n), LatentSpec(toy_vae_path, device="cpu", **KWARGS)
    )
    obs, _ = vector_env.reset(seed=seed)
    np.testing.assert_allclose(obs, [run["reset"] for run in reference], atol=ATOL)
    position = [0] * n  # next reference step of each env
    resetting = [False] * n
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(steps):
        actions = np.array([run["steps"][t]["action"] for run, t in zip(reference, position, strict=True)])
        obs, _, terminated, truncated, _ = vector_env.step(actions)
        for i, run in enumerate(reference):
            step = run["steps"][position[i] - 1] if resetting[i] else run["steps"][position[i]]
            if resetting[i]:
                np.testing.assert_allclose(obs[i], step["next_reset"], atol=ATOL)
                resetting[i] = False
                continue
            np.testing.assert_allclose(obs[i], step["obs"], atol=ATOL)
            assert (terminated[i], truncated[i]) == (step["terminated"], step["truncated"])
            if terminated[i] or truncated[i]:
                ends["terminated" if terminated[i] else "truncated"] += 1
                resetting[i] = True
            position[i] += 1
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


def test_same_step_autoreset_encodes_final_obs(toy_vae_path, latent_reference):
    steps, seed, n = 40, 7, 3
    reference = latent_reference(make_toy, n, steps, seed, **KWARGS)
    vector_env = SyncVectorEnv([make_toy] * n, autoreset_mode=AutoresetMode.SAME_STEP)
    vector_env = VectorLatentObservation(vector_env, LatentSpec(toy_vae_path, device="cpu", **KWARGS))
    obs, _ = vector_env.reset(seed=seed)
    np.testing.assert_allclose(obs, [run["reset"] for run in reference], atol=ATOL)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        expected = [run["steps"][t] for run in reference]
        obs, _, terminated, truncated, infos = vector_env.step(np.array([step["action"] for step in expected]))
        for i, step in enumerate(expected):
            if step["next_reset"] is None:
                np.testing.assert_allclose(obs[i], step["obs"], atol=ATOL)
                continue
            assert infos["_final_obs"][i] and (terminated[i] or truncated[i])
            np.testing.assert_allclose(infos["final_obs"][i], step["obs"], atol=ATOL)
            np.testing.assert_allclose(obs[i], step["next_reset"], atol=ATOL)
            ends["terminated" if terminated[i] else "truncated"] += 1
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends


def test_spaces_and_preprocessed_sub_envs(toy_vae_path):
    def make():
        return FrameSpecObservation(make_toy(), toy_vae_path)

    vector_env = VectorLatentObservation(SyncVectorEnv([make] * 2), LatentSpec(toy_vae_path, device="cpu", history=3))
    assert not vector_env.encoded.frame_latents.preprocess
    assert vector_env.single_observation_space == gym.spaces.Box(-np.inf, np.inf, (18,), np.float32)
    assert vector_env.observation_space.shape == (2, 18)
    obs, _ = vector_env.reset(seed=0)
    assert vector_env.observation_space.contains(obs)


def test_disabled_autoreset_is_rejected(toy_vae_path):
    vector_env = SyncVectorEnv([make_toy], autoreset_mode=AutoresetMode.DISABLED)
    with pytest.raises(ValueError, match=r"autoreset modes \['NEXT_STEP', 'SAME_STEP'\].*DISABLED"):
        VectorLatentObservation(vector_env, LatentSpec(toy_vae_path, device="cpu"))


def test_non_image_sub_envs_are_rejected(toy_vae_path):
    with pytest.raises(ValueError, match=r"needs uint8 HWC image observations.*PixelObservation"):
        VectorLatentObservation(
            SyncVectorEnv([lambda: gym.make("CartPole-v1")]), LatentSpec(toy_vae_path, device="cpu")
        )


def test_sample_is_reproducible_under_seed(toy_vae_path):
    def rollout(seed):
        vector_env = VectorLatentObservation(
            SyncVectorEnv([make_toy] * 2), LatentSpec(toy_vae_path, device="cpu", latent="sample")
        )
        out = [vector_env.reset(seed=seed)[0]]
        out += [vector_env.step(np.array([1, 2]))[0] for _ in range(5)]
        return np.stack(out)

    np.testing.assert_array_equal(rollout(1), rollout(1))
    assert not np.allclose(rollout(1), rollout(2))


def make_preprocessed_toy(vae_path):
    return FrameSpecObservation(gym.make("envs:worldmodel/DotTarget-v0", max_episode_steps=10), vae_path)


def test_async_workers_forked_after_torch_match_sync(toy_vae_path):
    """Forked workers read the frame spec from the checkpoint path without touching torch (no hang)."""
    make = functools.partial(make_preprocessed_toy, toy_vae_path)
    actions = np.random.default_rng(0).integers(0, 5, (15, 2))
    observations = []
    for vector_env in (AsyncVectorEnv([make] * 2, context="fork"), SyncVectorEnv([make] * 2)):
        vector_env = VectorLatentObservation(vector_env, LatentSpec(toy_vae_path, device="cpu"))
        out = [vector_env.reset(seed=0)[0]] + [vector_env.step(a)[0] for a in actions]
        vector_env.close()
        observations.append(np.stack(out))
    np.testing.assert_allclose(observations[0], observations[1], atol=ATOL)
