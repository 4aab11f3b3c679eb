"""Observations ``[z_t, h_t]`` for one Gymnasium env: the VAE latent and the memory model's hidden state.

World Models' controller reads both: the latent says what the frame shows, the hidden
state of the MDN-RNN what came before (speed, the track behind). For several envs prefer
the batched :class:`envs.memory.sb3_vec_env.VecMemoryObservation`.

The latents are the VAE's posterior means, unnormalised and with every dimension, as the
memory model was trained on them (``worldmodel train-memory``); the memory checkpoint
must belong to the VAE (same SHA-256) and to the env's action space.
"""

from __future__ import annotations

import os

import gymnasium as gym

from envs.latent.gymnasium_env import LatentObservation
from envs.latent.spec import LatentSpecLike
from envs.memory.state import memory_spec, memory_state
from worldmodel.memory.model import MemoryCheckpoint


class MemoryObservation(LatentObservation):
    """Observation = ``[z_t, h_t]`` (with ``include_cell``: ``[z_t, h_t, c_t]``), float32.

    The hidden state is zero at each reset and advances with each step by the latent of the
    frame the action was taken on and the action itself. Frames are read as by
    :class:`envs.latent.gymnasium_env.LatentObservation`, whose ``reset`` and ``step`` it keeps.

    Args:
        env: the env (image observations, or frames from ``render()`` as in
            :class:`envs.latent.gymnasium_env.LatentObservation`).
        spec: a :class:`~envs.latent.spec.LatentSpec`, a dict of its fields or a VAE checkpoint
            path; its VAE must be the memory model's (a path, or a loaded checkpoint with its
            path) and only ``device``, ``precision`` and ``compile`` may leave their defaults
            (mean latents of every dimension, not normalised, no history: see
            :func:`envs.memory.state.memory_spec`).
        memory: a memory checkpoint path or a loaded :class:`~worldmodel.memory.model.MemoryCheckpoint`.
        include_cell: append the LSTM cell state too.

    >>> import pathlib
    >>> import gymnasium as gym
    >>> from envs import LatentSpec
    >>> from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
    >>> from worldmodel.vae.checkpoint import file_sha256, save_untrained_vae
    >>> vae = save_untrained_vae(latent_dim=4)
    >>> memory = pathlib.Path(vae).with_name("memory.safetensors")  # an untrained LSTM of 8 units for 5 actions
    >>> save_memory(memory, MDNRNN(MemoryConfig(4, 5, discrete_actions=True, hidden=8)), vae_sha256=file_sha256(vae))
    >>> env = MemoryObservation(gym.make("worldmodel/DotTarget-v0"), LatentSpec(vae, device="cpu"), memory)
    >>> env.observation_space
    Box(-inf, inf, (12,), float32)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((12,), dtype('float32'))
    """

    def __init__(
        self,
        env: gym.Env,
        spec: LatentSpecLike,
        memory: MemoryCheckpoint | str | os.PathLike,
        *,
        include_cell: bool = False,
    ) -> None:
        spec = memory_spec(spec)
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec.recorded(), memory=memory, include_cell=include_cell)
        self._setup(env, spec, memory_state(memory, include_cell))
