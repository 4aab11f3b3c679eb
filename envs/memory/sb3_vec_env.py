"""Observations ``[z_t, h_t]`` for an SB3 ``VecEnv``: one encoder pass and one LSTM step for all envs per step.

As :class:`envs.latent.sb3_vec_env.VecLatentObservation`, sub-envs only produce
uint8 frames and the main process encodes them, terminal frames included, on its
device; then the memory model advances every env's hidden state in one batched step.
Put ``VecNormalize`` after this wrapper.
"""

from __future__ import annotations

import os

from stable_baselines3.common.vec_env import VecEnv

from envs.latent.gymnasium_env import latent_encoder
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.memory.state import MemoryState, memory_model
from worldmodel.memory.model import MemoryCheckpoint
from worldmodel.vae.checkpoint import VAECheckpoint
from worldmodel.vae.encoder import LatentEncoder


class VecMemoryObservation(VecLatentObservation):
    """SB3 ``VecEnvWrapper`` whose observations are ``[z_t, h_t]`` of all sub-envs.

    ``infos[i]["terminal_observation"]`` becomes ``[z_T, h_T]``: the final frame's latent with
    the hidden state advanced by the last action, as the single-env wrapper returns it; the
    env's state is then reset for its next episode. Keywords as
    :class:`envs.memory.gymnasium_env.MemoryObservation`; stepping as
    :class:`envs.latent.sb3_vec_env.VecLatentObservation`.

    >>> import tempfile, pathlib
    >>> import gymnasium as gym
    >>> import envs
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from worldmodel.vae.checkpoint import file_sha256, save_vae
    >>> from worldmodel.frames import FrameSpec
    >>> from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
    >>> from worldmodel.vae.model import ConvVAE, VAEConfig
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> save_vae(tmp / "vae.safetensors", ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)),
    ...          FrameSpec(16, 16))
    >>> save_memory(tmp / "memory.safetensors", MDNRNN(MemoryConfig(4, 5, discrete_actions=True, hidden=8)),
    ...             vae_sha256=file_sha256(tmp / "vae.safetensors"))
    >>> venv = DummyVecEnv([lambda: gym.make("worldmodel/DotTarget-v0")] * 3)
    >>> venv = VecMemoryObservation(venv, str(tmp / "vae.safetensors"), str(tmp / "memory.safetensors"),
    ...                             device="cpu")
    >>> venv.reset().shape
    (3, 12)
    """

    def __init__(
        self,
        venv: VecEnv,
        vae: LatentEncoder | VAECheckpoint | str | os.PathLike,
        memory: MemoryCheckpoint | str | os.PathLike,
        *,
        device: str = "auto",
        precision: str = "fp32",
        include_cell: bool = False,
    ) -> None:
        encoder = latent_encoder(vae, device=device, precision=precision)
        model = memory_model(memory, encoder)
        self._setup(venv, encoder, MemoryState(model, venv.num_envs, venv.action_space, include_cell))
