"""Observations as VAE latents for an SB3 ``VecEnv``: one batched forward pass for all envs.

The sub-envs (in ``DummyVecEnv`` or ``SubprocVecEnv`` workers) only produce uint8
frames; the main process encodes them on its device (CUDA is never loaded in workers).
Render-based envs need their frames as observations inside each worker:
``PixelObservation(gym.make(id, render_mode="rgb_array"))``, ideally followed by
``FrameSpecObservation(env, checkpoint_path)`` so workers resize and ship small frames.
Both raw and preprocessed frames are accepted.

In rl-zoo this wrapper belongs in ``vec_env_wrapper`` (it batches across envs), not in
``env_wrapper`` (per worker, unbatched), e.g. in the hyperparameter YAML::

    env_wrapper:
      - envs.pixels.PixelObservation
      - envs.frame_wrapper.FrameSpecObservation: {frame_spec: runs/vae/best.safetensors}
    vec_env_wrapper:
      - envs.latent.sb3_vec_env.VecLatentObservation: {vae: runs/vae/best.safetensors, history: 2}
    policy: MlpPolicy

Put ``VecNormalize`` after this wrapper (see :mod:`envs.latent.gymnasium_env`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from envs.latent.gymnasium_env import FrameLatents, frame_shape_of, latent_encoder
from envs.latent.history import LatentHistory
from envs.pixels import is_image_space
from worldmodel.vae.checkpoint import VAECheckpoint
from worldmodel.vae.encoder import LatentEncoder

TERMINAL = "terminal_observation"


class VecLatentObservation(VecEnvWrapper):
    """SB3 ``VecEnvWrapper`` whose observations are the latents of all sub-envs' frames.

    Each step encodes the ``num_envs`` frames and every ``infos[i]["terminal_observation"]``
    together in one forward pass; the terminal observation is replaced by its latent
    observation (with history and action, as the single-env wrapper would return it),
    so algorithms bootstrap from latents. Keywords as
    :class:`envs.latent.gymnasium_env.LatentObservation`; ``latent="sample"`` draws from one
    generator seeded by :meth:`seed`.

    >>> import tempfile, pathlib
    >>> import gymnasium as gym
    >>> import envs
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from worldmodel.vae.checkpoint import save_vae
    >>> from worldmodel.frames import FrameSpec
    >>> from worldmodel.vae.model import ConvVAE, VAEConfig
    >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "vae.safetensors")
    >>> save_vae(path, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
    >>> venv = DummyVecEnv([lambda: gym.make("worldmodel/DotTarget-v0")] * 3)
    >>> venv = VecLatentObservation(venv, path, device="cpu", history=2)
    >>> venv.observation_space
    Box(-inf, inf, (8,), float32)
    >>> venv.reset().shape
    (3, 8)
    """

    def __init__(
        self,
        venv: VecEnv,
        vae: LatentEncoder | VAECheckpoint | str | os.PathLike,
        *,
        device: str = "auto",
        latent: str = "mean",
        history: int = 1,
        include_action: bool = False,
        normalize: bool = False,
        drop_inactive: bool = False,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        encoder = latent_encoder(
            vae,
            device=device,
            latent=latent,
            normalize=normalize,
            drop_inactive=drop_inactive,
            precision=precision,
            compile=compile,
        )
        action_space = venv.action_space if include_action else None
        self._setup(venv, encoder, LatentHistory(venv.num_envs, encoder.latent_dim, history, action_space))

    def _setup(self, venv: VecEnv, encoder: LatentEncoder, history: Any) -> None:
        """Check the sub-envs' frames and wrap ``venv``; ``history`` builds the observations from latents:
        ``reset(latents, mask)``, ``push(latents, actions)``, ``observation_space``."""
        name = type(self).__name__
        if not is_image_space(venv.observation_space):
            raise ValueError(
                f"{name} needs uint8 HWC image observations from the sub-envs, got "
                f"{venv.observation_space}; wrap each sub-env in envs.PixelObservation (frames from render()) "
                f"and optionally envs.FrameSpecObservation, and put {name} before any VecTransposeImage"
            )
        self.encoder = encoder
        declared = set(venv.get_attr("frame_spec")) if venv.has_attr("frame_spec") else {None}
        if len(declared) > 1:
            raise ValueError(f"the VecEnv's sub-envs apply different frame specs {declared}; use one for all")
        self.frame_latents = FrameLatents(
            encoder, frame_shape_of(venv.observation_space), declared.pop(), source="the VecEnv's sub-envs"
        )
        self.history = history
        self.generator = encoder.make_generator()
        self._actions: np.ndarray | None = None
        VecEnvWrapper.__init__(self, venv, observation_space=history.observation_space)

    def seed(self, seed: int | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        return self.venv.seed(seed)

    def reset(self) -> VecEnvObs:
        frames = self.venv.reset()
        return self.history.reset(self.frame_latents(frames, self.generator))

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        frames, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i in np.flatnonzero(dones) if TERMINAL in infos[i]]
        batch = np.concatenate([frames, np.stack([infos[i][TERMINAL] for i in ended])]) if ended else frames
        latents = self.frame_latents(batch, self.generator)  # (num_envs + len(ended), d)
        step_latents = latents[: self.num_envs].copy()
        step_latents[ended] = latents[self.num_envs :]
        last = self.history.push(step_latents, self._actions)
        for i in ended:
            infos[i][TERMINAL] = last[i]
        obs = self.history.reset(latents[: self.num_envs], mask=dones)
        return obs, rewards, dones, infos
