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

from envs.latent.gymnasium_env import LatentObservation, latent_encoder
from envs.memory.state import MemoryState, memory_model
from worldmodel.memory.model import MemoryCheckpoint
from worldmodel.vae.checkpoint import VAECheckpoint
from worldmodel.vae.encoder import LatentEncoder


class MemoryObservation(LatentObservation):
    """Observation = ``[z_t, h_t]`` (with ``include_cell``: ``[z_t, h_t, c_t]``), float32.

    The hidden state is zero at each reset and advances with each step by the latent of the
    frame the action was taken on and the action itself. Frames are read as by
    :class:`envs.latent.gymnasium_env.LatentObservation`, whose ``reset`` and ``step`` it keeps.

    Args:
        env: the env (image observations, or frames from ``render()`` as in
            :class:`envs.latent.gymnasium_env.LatentObservation`).
        vae: a VAE checkpoint path, a loaded checkpoint (with its path) or a shared
            :class:`~worldmodel.vae.encoder.LatentEncoder` (mean latents, not normalised).
        memory: a memory checkpoint path or a loaded :class:`~worldmodel.memory.model.MemoryCheckpoint`.
        device, precision: see :class:`worldmodel.vae.encoder.LatentEncoder`.
        include_cell: append the LSTM cell state too.

    >>> import tempfile, pathlib
    >>> import gymnasium as gym
    >>> import envs
    >>> from worldmodel.vae.checkpoint import file_sha256, save_vae
    >>> from worldmodel.frames import FrameSpec
    >>> from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
    >>> from worldmodel.vae.model import ConvVAE, VAEConfig
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> save_vae(tmp / "vae.safetensors", ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)),
    ...          FrameSpec(16, 16))
    >>> save_memory(tmp / "memory.safetensors", MDNRNN(MemoryConfig(4, 5, discrete_actions=True, hidden=8)),
    ...             vae_sha256=file_sha256(tmp / "vae.safetensors"))
    >>> env = MemoryObservation(gym.make("worldmodel/DotTarget-v0"), str(tmp / "vae.safetensors"),
    ...                         str(tmp / "memory.safetensors"), device="cpu")
    >>> env.observation_space
    Box(-inf, inf, (12,), float32)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((12,), dtype('float32'))
    """

    def __init__(
        self,
        env: gym.Env,
        vae: LatentEncoder | VAECheckpoint | str | os.PathLike,
        memory: MemoryCheckpoint | str | os.PathLike,
        *,
        device: str = "auto",
        precision: str = "fp32",
        include_cell: bool = False,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, vae=vae, memory=memory, device=device, precision=precision, include_cell=include_cell
        )
        encoder = latent_encoder(vae, device=device, precision=precision)
        self._setup(env, encoder, MemoryState(memory_model(memory, encoder), 1, env.action_space, include_cell))
