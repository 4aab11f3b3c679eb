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

from typing import Any

import numpy as np
from gymnasium.utils import RecordConstructorArgs
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from envs.latent.encoded_observations import EncodedObservations
from envs.latent.spec import LatentSpec, LatentSpecLike

SUPPORTED_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


class VectorLatentObservation(VectorWrapper, RecordConstructorArgs):
    """``gymnasium.vector`` wrapper whose observations are the latents of all sub-envs' frames.

    ``spec`` as for :class:`envs.latent.gymnasium_env.LatentObservation` (a
    :class:`~envs.latent.spec.LatentSpec`, a dict of its fields or a checkpoint path);
    ``latent="sample"`` draws from one generator seeded by ``reset(seed=...)`` (the first
    seed of a list).

    >>> import gymnasium as gym
    >>> import envs
    >>> from worldmodel.vae.checkpoint import save_untrained_vae
    >>> spec = {"vae": save_untrained_vae(latent_dim=4), "device": "cpu", "history": 2}  # a LatentSpec's fields
    >>> vector_env = gym.make_vec("worldmodel/DotTarget-v0", num_envs=3, vectorization_mode="sync")
    >>> vector_env = VectorLatentObservation(vector_env, spec)
    >>> vector_env.single_observation_space, vector_env.observation_space.shape
    (Box(-inf, inf, (8,), float32), (3, 8))
    >>> vector_env.reset(seed=0)[0].shape
    (3, 8)
    """

    def __init__(self, env: VectorEnv, spec: LatentSpecLike) -> None:
        spec = LatentSpec.coerce(spec)
        RecordConstructorArgs.__init__(self, spec=spec.recorded())
        VectorWrapper.__init__(self, env)
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.autoreset_mode not in SUPPORTED_MODES:
            raise ValueError(
                f"VectorLatentObservation handles autoreset modes {[m.name for m in SUPPORTED_MODES]}, "
                f"got {self.autoreset_mode}; make the vector env with "
                "vector_kwargs={'autoreset_mode': gym.vector.AutoresetMode.NEXT_STEP}"
            )
        declared = env.get_attr("frame_spec") if all(env.call("has_wrapper_attr", "frame_spec")) else [None]
        self.encoded = EncodedObservations(
            spec,
            env.num_envs,
            env.single_observation_space,
            env.single_action_space,
            declared,
            source="the vector env's sub-envs",
            wrapper=type(self).__name__,
        )
        self.encoder, self.generator, self.history = self.encoded.encoder, self.encoded.generator, self.encoded.state
        self.single_observation_space = self.encoded.observation_space
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)
        self._autoreset = np.zeros(env.num_envs, dtype=bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        self.encoded.seed(seed[0] if isinstance(seed, (list, tuple)) else seed)
        frames, infos = self.env.reset(seed=seed, options=options)
        self._autoreset[:] = False
        return self.encoded.reset(frames), infos

    def step(self, actions):
        frames, rewards, terminations, truncations, infos = self.env.step(actions)
        dones = np.logical_or(terminations, truncations)
        ended = np.flatnonzero(infos.get("_final_obs", np.zeros(self.num_envs, dtype=bool)))
        # NEXT_STEP: envs that ended last step were reset in this one; SAME_STEP: envs that ended now.
        restarted = self._autoreset if self.autoreset_mode == AutoresetMode.NEXT_STEP else dones
        final_frames = [infos["final_obs"][i] for i in ended]
        obs, final_obs = self.encoded.step(frames, actions, final_frames, ended, restart=restarted)
        if ended.size:
            infos["final_obs"] = infos["final_obs"].copy()
            for i, observation in zip(ended, final_obs, strict=True):
                infos["final_obs"][i] = observation
        self._autoreset = dones
        return obs, rewards, terminations, truncations, infos
