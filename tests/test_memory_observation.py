import functools
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv
from test_vec_latent_observation import ATOL, check_against_reference, make_toy

import envs  # noqa: F401
from envs.latent.spec import LatentSpec
from envs.memory.gymnasium_env import MemoryObservation
from envs.memory.sb3_vec_env import VecMemoryObservation
from worldmodel.frames import FrameSpec
from worldmodel.memory.model import MDNRNN, MemoryConfig, load_memory, save_memory
from worldmodel.vae.checkpoint import CheckpointError, file_sha256, save_vae
from worldmodel.vae.encoder import LatentEncoder
from worldmodel.vae.model import ConvVAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("include_cell", [False, True])
def test_vec_matches_loop_of_single_env_wrappers(toy_vae_path, toy_memory_path, latent_reference, include_cell):
    steps, seed = 40, 3
    spec = LatentSpec(toy_vae_path, device="cpu")
    wrap = functools.partial(MemoryObservation, spec=spec, memory=toy_memory_path, include_cell=include_cell)
    reference = latent_reference(make_toy, 4, steps, seed, wrap=wrap)
    venv = VecMemoryObservation(DummyVecEnv([make_toy] * 4), spec, toy_memory_path, include_cell=include_cell)
    assert venv.observation_space.shape == (6 + 16 * (2 if include_cell else 1),)
    venv.seed(seed)
    check_against_reference(venv, reference, steps)
    hidden = np.array([step["obs"][6:] for step in reference[0]["steps"]])
    assert np.abs(np.diff(hidden, axis=0)).max() > 100 * ATOL  # the hidden state moves: the comparison has teeth


def test_hidden_state_starts_at_zero_and_advances_with_the_action_taken(toy_vae_path, toy_memory_path):
    env = MemoryObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu"), toy_memory_path)
    model = load_memory(toy_memory_path).model
    obs, _ = env.reset(seed=0)
    assert not obs[6:].any()
    state = None
    for action in (4, 4, 1, 0):
        z = torch.as_tensor(obs[:6]).view(1, 1, 6)
        with torch.no_grad():
            state = model(z, model.action_input(torch.tensor([[action]])), state).state
        obs, *_ = env.step(action)
        np.testing.assert_allclose(obs[6:], state[0].view(-1).numpy(), atol=ATOL)
    obs, _ = env.reset()
    assert not obs[6:].any()


def test_sb3_check_env_and_ppo_runs(toy_vae_path, toy_memory_path):
    env = MemoryObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu"), toy_memory_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)  # raises on an API error
    assert [str(w.message) for w in caught] == []  # and warns of nothing (e.g. no dtype or bounds mismatch)
    venv = VecMemoryObservation(DummyVecEnv([make_toy] * 2), LatentSpec(toy_vae_path, device="cpu"), toy_memory_path)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert model.num_timesteps == 64  # one rollout of 32 steps in each of the 2 envs
    assert model.observation_space == venv.observation_space and model.observation_space.shape == (6 + 16,)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))  # it updated
    obs = venv.reset()
    assert all(venv.observation_space.contains(o) for o in obs)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and all(venv.action_space.contains(int(a)) for a in actions)


def test_mismatched_vae_or_action_space_is_refused(toy_vae_path, toy_memory_path, tmp_path):
    other = tmp_path / "other.safetensors"
    save_vae(other, ConvVAE(VAEConfig(32, 32, latent_dim=6, width_multiplier=0.5)), FrameSpec(32, 32))
    with pytest.raises(CheckpointError, match=f"SHA-256 {file_sha256(toy_vae_path)}.*SHA-256 {file_sha256(other)}"):
        MemoryObservation(make_toy(), LatentSpec(other, device="cpu"), toy_memory_path)
    small = tmp_path / "small.safetensors"
    save_memory(small, MDNRNN(MemoryConfig(4, 5, discrete_actions=True, hidden=4)), vae_sha256=file_sha256(other))
    with pytest.raises(ValueError, match=r"latents of size 4, but .*other.safetensors makes latents of size 6"):
        VecMemoryObservation(DummyVecEnv([make_toy]), LatentSpec(other, device="cpu"), small)
    continuous = gym.make("worldmodel/DotTargetContinuous-v0")
    with pytest.raises(ValueError, match=r"trained for 5 discrete actions, but the env's action space is Box"):
        MemoryObservation(continuous, LatentSpec(toy_vae_path, device="cpu"), toy_memory_path)


def test_a_spec_the_memory_model_cannot_read_is_refused(toy_vae_path, toy_memory_path):
    for options in ({"history": 2}, {"latent": "sample"}, {"normalize": True, "include_action": True}):
        with pytest.raises(ValueError, match=r"the memory model reads mean, unnormalised latents .* spec sets"):
            MemoryObservation(make_toy(), LatentSpec(toy_vae_path, device="cpu", **options), toy_memory_path)
    sampling = LatentEncoder(toy_vae_path, device="cpu", latent="sample")  # a shared encoder's own options count
    with pytest.raises(ValueError, match=r"spec sets \{'latent': 'sample'\}"):
        VecMemoryObservation(DummyVecEnv([make_toy]), sampling, toy_memory_path)
