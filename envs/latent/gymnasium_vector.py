"""Observations as VAE latents for a ``gymnasium.vector`` env: one batched forward pass for all envs.

The counterpart of :class:`envs.latent.sb3_vec_env.VecLatentObservation` for
Gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` (sub-envs emit uint8 frames; see that
module for render-based envs and worker-side resizing).

Autoreset modes: ``NEXT_STEP`` (Gymnasium's default: the step after an episode end
returns the reset observation, and the history restarts there) and ``SAME_STEP``
(``infos["final_obs"][i]`` holds the last frame; it is encoded in the same forward pass
and replaced by its latent observation). ``DISABLED`` is rejected.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from gymnasium.utils import RecordConstructorArgs
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from envs.latent.gymnasium_env import FrameLatents, frame_shape_of, latent_encoder
from envs.latent.history import LatentHistory
from envs.pixels import is_image_space
from worldmodel.vae.checkpoint import VAECheckpoint
from worldmodel.vae.encoder import LatentEncoder

SUPPORTED_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


class VectorLatentObservation(VectorWrapper, RecordConstructorArgs):
    """``gymnasium.vector`` wrapper whose observations are the latents of all sub-envs' frames.

    Keywords as :class:`envs.latent.gymnasium_env.LatentObservation`; ``latent="sample"``
    draws from one generator seeded by ``reset(seed=...)`` (the first seed of a list).

    >>> import tempfile, pathlib
    >>> import gymnasium as gym
    >>> import envs
    >>> from worldmodel.vae.checkpoint import save_vae
    >>> from worldmodel.frames import FrameSpec
    >>> from worldmodel.vae.model import ConvVAE, VAEConfig
    >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "vae.safetensors")
    >>> save_vae(path, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
    >>> vector_env = gym.make_vec("worldmodel/DotTarget-v0", num_envs=3, vectorization_mode="sync")
    >>> vector_env = VectorLatentObservation(vector_env, path, device="cpu", history=2)
    >>> vector_env.single_observation_space, vector_env.observation_space.shape
    (Box(-inf, inf, (8,), float32), (3, 8))
    >>> vector_env.reset(seed=0)[0].shape
    (3, 8)
    """

    def __init__(
        self,
        env: VectorEnv,
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
        RecordConstructorArgs.__init__(
            self,
            vae=vae,
            device=device,
            latent=latent,
            history=history,
            include_action=include_action,
            normalize=normalize,
            drop_inactive=drop_inactive,
            precision=precision,
            compile=compile,
        )
        VectorWrapper.__init__(self, env)
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.autoreset_mode not in SUPPORTED_MODES:
            raise ValueError(
                f"VectorLatentObservation handles autoreset modes {[m.name for m in SUPPORTED_MODES]}, "
                f"got {self.autoreset_mode}; make the vector env with "
                "vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.NEXT_STEP}"
            )
        if not is_image_space(env.single_observation_space):
            raise ValueError(
                f"VectorLatentObservation needs uint8 HWC image observations from the sub-envs, got "
                f"{env.single_observation_space}; wrap each sub-env in envs.PixelObservation (frames from "
                "render()) and optionally envs.FrameSpecObservation"
            )
        self.encoder = latent_encoder(
            vae,
            device=device,
            latent=latent,
            normalize=normalize,
            drop_inactive=drop_inactive,
            precision=precision,
            compile=compile,
        )
        declared = set(env.get_attr("frame_spec")) if all(env.call("has_wrapper_attr", "frame_spec")) else {None}
        if len(declared) > 1:
            raise ValueError(f"the vector env's sub-envs apply different frame specs {declared}; use one for all")
        self.frame_latents = FrameLatents(
            self.encoder, frame_shape_of(env.single_observation_space), declared.pop(), "the vector env's sub-envs"
        )
        self.history = LatentHistory(
            env.num_envs, self.encoder.latent_dim, history, env.single_action_space if include_action else None
        )
        self.single_observation_space = self.history.observation_space
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)
        self.generator = self.encoder.make_generator()
        self._autoreset = np.zeros(env.num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        first_seed = seed[0] if isinstance(seed, (list, tuple)) else seed
        if first_seed is not None:
            self.generator.manual_seed(first_seed)
        frames, infos = self.env.reset(seed=seed, options=options)
        self._autoreset[:] = False
        return self.history.reset(self.frame_latents(frames, self.generator)), infos

    def step(self, actions):
        frames, rewards, terminations, truncations, infos = self.env.step(actions)
        dones = np.logical_or(terminations, truncations)
        n = self.num_envs
        ended = np.flatnonzero(infos.get("_final_obs", np.zeros(n, dtype=bool)))
        batch = np.concatenate([frames, np.stack(list(infos["final_obs"][ended]))]) if ended.size else frames
        latents = self.frame_latents(batch, self.generator)  # (n + len(ended), d)
        step_latents = latents[:n].copy()
        step_latents[ended] = latents[n:]
        last = self.history.push(step_latents, actions)
        if ended.size:
            final_obs = infos["final_obs"].copy()
            for i in ended:
                final_obs[i] = last[i]
            infos["final_obs"] = final_obs
        # NEXT_STEP: envs that ended last step were reset in this one; SAME_STEP: envs that ended now.
        restarted = self._autoreset if self.autoreset_mode == AutoresetMode.NEXT_STEP else dones
        obs = self.history.reset(latents[:n], mask=restarted)
        self._autoreset = dones
        return obs, rewards, terminations, truncations, infos
