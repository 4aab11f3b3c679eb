"""Observations ``[z_t, h_t]`` for an SB3 ``VecEnv``: one encoder pass and one LSTM step for all envs per step.

As :class:`envs.latent.sb3_vec_env.VecLatentObservation`, sub-envs only produce
uint8 frames and the main process encodes them, terminal frames included, on its
device; then the memory model advances every env's hidden state in one batched step.
Put ``VecNormalize`` after this wrapper.
"""

from __future__ import annotations

import os

from stable_baselines3.common.vec_env import VecEnv

from envs.latent.sb3_vec_env import VecLatentObservation
from envs.latent.spec import LatentSpecLike
from envs.memory.state import memory_spec, memory_state
from worldmodel.memory.model import MemoryCheckpoint


class VecMemoryObservation(VecLatentObservation):
    """SB3 ``VecEnvWrapper`` whose observations are ``[z_t, h_t]`` of all sub-envs.

    ``infos[i]["terminal_observation"]`` becomes ``[z_T, h_T]``: the final frame's latent with
    the hidden state advanced by the last action, as the single-env wrapper returns it; the
    env's state is then reset for its next episode. Arguments as
    :class:`envs.memory.gymnasium_env.MemoryObservation`; stepping as
    :class:`envs.latent.sb3_vec_env.VecLatentObservation`.

    >>> import pathlib
    >>> import gymnasium as gym
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
    >>> from worldmodel.vae.checkpoint import file_sha256, save_untrained_vae
    >>> vae = save_untrained_vae(latent_dim=4)
    >>> memory = pathlib.Path(vae).with_name("memory.safetensors")
    >>> save_memory(memory, MDNRNN(MemoryConfig(4, 5, discrete_actions=True, hidden=8)), vae_sha256=file_sha256(vae))
    >>> venv = DummyVecEnv([lambda: gym.make("worldmodel/DotTarget-v0")] * 3)
    >>> venv = VecMemoryObservation(venv, {"vae": vae, "device": "cpu"}, memory)
    >>> venv.reset().shape
    (3, 12)
    """

    def __init__(
        self,
        venv: VecEnv,
        spec: LatentSpecLike,
        memory: MemoryCheckpoint | str | os.PathLike,
        *,
        include_cell: bool = False,
    ) -> None:
        self._setup(venv, memory_spec(spec), memory_state(memory, include_cell))
