import functools

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv
from test_vec_latent_observation import ATOL, check_against_reference, make_toy

import envs  # noqa: F401
from envs.memory.gymnasium_env import MemoryObservation
from envs.memory.sb3_vec_env import VecMemoryObservation
from worldmodel.frames import FrameSpec
from worldmodel.memory.model import MDNRNN, MemoryConfig, load_memory, save_memory
from worldmodel.vae.checkpoint import CheckpointError, file_sha256, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("include_cell", [False, True])
def test_vec_matches_loop_of_single_env_wrappers(toy_vae_path, toy_memory_path, latent_reference, include_cell):
    steps, seed = 40, 3
    kwargs = dict(device="cpu", include_cell=include_cell)
    wrap = functools.partial(MemoryObservation, vae=toy_vae_path, memory=toy_memory_path, **kwargs)
    reference = latent_reference(make_toy, 4, steps, seed, wrap=wrap)
    venv = VecMemoryObservation(DummyVecEnv([make_toy] * 4), toy_vae_path, toy_memory_path, **kwargs)
    assert venv.observation_space.shape == (6 + 16 * (2 if include_cell else 1),)
    venv.seed(seed)
    check_against_reference(venv, reference, steps)
    hidden = np.array([step["obs"][6:] for step in reference[0]["steps"]])
    assert np.abs(np.diff(hidden, axis=0)).max() > 100 * ATOL  # the hidden state moves: the comparison has teeth


def test_hidden_state_starts_at_zero_and_advances_with_the_action_taken(toy_vae_path, toy_memory_path):
    env = MemoryObservation(make_toy(), toy_vae_path, toy_memory_path, device="cpu")
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
    check_env(MemoryObservation(make_toy(), toy_vae_path, toy_memory_path, device="cpu"))
    venv = VecMemoryObservation(DummyVecEnv([make_toy] * 2), toy_vae_path, toy_memory_path, device="cpu")
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0).learn(64)


def test_mismatched_vae_or_action_space_is_refused(toy_vae_path, toy_memory_path, tmp_path):
    other = tmp_path / "other.safetensors"
    save_vae(other, ConvVAE(VAEConfig(32, 32, latent_dim=6, width_multiplier=0.5)), FrameSpec(32, 32))
    with pytest.raises(CheckpointError, match=f"SHA-256 {file_sha256(toy_vae_path)}.*SHA-256 {file_sha256(other)}"):
        MemoryObservation(make_toy(), str(other), toy_memory_path, device="cpu")
    small = tmp_path / "small.safetensors"
    save_memory(small, MDNRNN(MemoryConfig(4, 5, discrete_actions=True, hidden=4)), vae_sha256=file_sha256(other))
    with pytest.raises(ValueError, match=r"latents of size 4, but .*other.safetensors makes latents of size 6"):
        VecMemoryObservation(DummyVecEnv([make_toy]), str(other), str(small), device="cpu")
    continuous = gym.make("worldmodel/DotTargetContinuous-v0")
    with pytest.raises(ValueError, match=r"trained for 5 discrete actions, but the env's action space is Box"):
        MemoryObservation(continuous, toy_vae_path, toy_memory_path, device="cpu")
