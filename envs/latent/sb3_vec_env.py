"""Observations as VAE latents for an SB3 ``VecEnv``: one batched forward pass for all envs.

The sub-envs (in ``DummyVecEnv`` or ``SubprocVecEnv`` workers) only produce uint8
frames; the main process encodes them on its device (CUDA is never loaded in workers).
Render-based envs need their frames as observations inside each worker:
``PixelObservation(gym.make(id, render_mode="rgb_array"))``, ideally followed by
``FrameSpecObservation(env, checkpoint_path)`` so workers resize and ship small frames.
Both raw and preprocessed frames are accepted.

In rl-zoo this wrapper belongs in ``vec_env_wrapper`` (it batches across envs), not in
``env_wrapper`` (per worker, unbatched); its ``spec`` is a dict of
:class:`~envs.latent.spec.LatentSpec` fields (or just the checkpoint path), e.g. in the
hyperparameter YAML::

    env_wrapper:
      - envs.pixels.PixelObservation
      - envs.frame_wrapper.FrameSpecObservation: {frame_spec: runs/vae/best.safetensors}
    vec_env_wrapper:
      - envs.latent.sb3_vec_env.VecLatentObservation:
          spec: {vae: runs/vae/best.safetensors, history: 2}
    policy: MlpPolicy

Put ``VecNormalize`` after this wrapper (see :mod:`envs.latent.gymnasium_env`).
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from envs.latent.encoded_observations import EncodedObservations, StateFactory
from envs.latent.spec import LatentSpec, LatentSpecLike

TERMINAL = "terminal_observation"


class VecLatentObservation(VecEnvWrapper):
    """SB3 ``VecEnvWrapper`` whose observations are the latents of all sub-envs' frames.

    Each step encodes the ``num_envs`` frames and every ``infos[i]["terminal_observation"]``
    together in one forward pass; the terminal observation is replaced by its latent
    observation (with history and action, as the single-env wrapper would return it),
    so algorithms bootstrap from latents. ``spec`` as for
    :class:`envs.latent.gymnasium_env.LatentObservation` (a :class:`~envs.latent.spec.LatentSpec`,
    a dict of its fields or a checkpoint path); ``latent="sample"`` draws from one generator
    seeded by :meth:`seed`.

    >>> import gymnasium as gym
    >>> from stable_baselines3.common.vec_env import DummyVecEnv
    >>> from envs import LatentSpec
    >>> from worldmodel.vae.checkpoint import save_untrained_vae
    >>> venv = DummyVecEnv([lambda: gym.make("worldmodel/DotTarget-v0")] * 3)
    >>> venv = VecLatentObservation(venv, LatentSpec(save_untrained_vae(latent_dim=4), device="cpu", history=2))
    >>> venv.observation_space
    Box(-inf, inf, (8,), float32)
    >>> venv.reset().shape
    (3, 8)
    """

    def __init__(self, venv: VecEnv, spec: LatentSpecLike) -> None:
        self._setup(venv, LatentSpec.coerce(spec))

    def _setup(self, venv: VecEnv, spec: LatentSpec, state: StateFactory | None = None) -> None:
        """Check the sub-envs' frames and wrap ``venv``; ``state`` as in
        :class:`~envs.latent.encoded_observations.EncodedObservations`."""
        self.encoded = EncodedObservations(
            spec,
            venv.num_envs,
            venv.observation_space,
            venv.action_space,
            venv.get_attr("frame_spec") if venv.has_attr("frame_spec") else [None],
            source="the VecEnv's sub-envs",
            wrapper=type(self).__name__,
            state=state,
        )
        self.encoder, self.generator, self.history = self.encoded.encoder, self.encoded.generator, self.encoded.state
        self._actions: np.ndarray | None = None
        VecEnvWrapper.__init__(self, venv, observation_space=self.encoded.observation_space)

    def seed(self, seed: int | None = None):
        self.encoded.seed(seed)
        return self.venv.seed(seed)

    def reset(self) -> VecEnvObs:
        return self.encoded.reset(self.venv.reset())

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        frames, rewards, dones, infos = self.venv.step_wait()
        ended = [i for i in np.flatnonzero(dones) if TERMINAL in infos[i]]
        final_frames = [infos[i][TERMINAL] for i in ended]
        obs, final_obs = self.encoded.step(frames, self._actions, final_frames, ended, restart=dones)
        for i, observation in zip(ended, final_obs, strict=True):
            infos[i][TERMINAL] = observation
        return obs, rewards, dones, infos
