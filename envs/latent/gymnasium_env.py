"""Observations as VAE latents for one Gymnasium env.

:class:`LatentObservation` replaces each frame by its latent (plus, optionally, the last
k latents and the previous action), so any SB3 algorithm trains an ``MlpPolicy`` on a
``Box(-inf, inf, (d,), float32)`` observation. For several envs prefer the batched
:class:`envs.latent.sb3_vec_env.VecLatentObservation` (SB3) or
:class:`envs.latent.gymnasium_vector.VectorLatentObservation` (``gymnasium.vector``):
one forward pass for all envs in the main process. All three take a
:class:`envs.latent.spec.LatentSpec` and share their logic in
:class:`envs.latent.encoded_observations.EncodedObservations`.

On normalisation: ``normalize=True`` standardises latents with fixed statistics from the
VAE's training set, which keeps observations identical at training and evaluation time;
then leave ``VecNormalize(norm_obs=False)`` (reward normalisation is still fine).
Without statistics in the checkpoint, put ``VecNormalize(norm_obs=True)`` after the
latent wrapper (never both) and save its statistics beside the agent.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.latent.encoded_observations import EncodedObservations, StateFactory
from envs.latent.spec import LatentSpec, LatentSpecLike
from envs.pixels import PixelObservation, env_name, is_image_space


class LatentObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation = the VAE latent of the env's frame (optionally stacked, with the previous action).

    Frames come from image observations or, for other envs, from ``render()`` (the env
    needs ``render_mode="rgb_array"``; it is wrapped in :class:`envs.pixels.PixelObservation`,
    which also keeps the original observation in ``info["state"]``). The checkpoint's
    frame spec is applied to each frame unless the env already applies it
    (:class:`envs.frame_wrapper.FrameSpecObservation`).

    Args:
        env: the env.
        spec: a :class:`~envs.latent.spec.LatentSpec` (the VAE, the encoder's options, history
            and previous action), a dict of its fields, or just a VAE checkpoint path (all
            defaults). With a checkpoint path the wrapper records the spec as a dict, so it
            can be rebuilt from its recorded constructor arguments (``gym.make(env.spec)``, as
            ``check_env`` and rl-zoo do). ``latent="sample"`` draws from a generator seeded by
            ``reset(seed=...)``.

    >>> import gymnasium as gym
    >>> from envs import LatentSpec
    >>> from worldmodel.vae.checkpoint import save_untrained_vae
    >>> path = save_untrained_vae(latent_dim=4)  # in practice: your trained checkpoint
    >>> env = LatentObservation(gym.make("worldmodel/DotTarget-v0"), LatentSpec(path, device="cpu", history=2))
    >>> env.observation_space
    Box(-inf, inf, (8,), float32)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((8,), dtype('float32'))
    """

    def __init__(self, env: gym.Env, spec: LatentSpecLike) -> None:
        spec = LatentSpec.coerce(spec)
        gym.utils.RecordConstructorArgs.__init__(self, spec=spec.recorded())
        self._setup(env, spec)

    def _setup(self, env: gym.Env, spec: LatentSpec, state: StateFactory | None = None) -> None:
        """Wrap ``env`` (its frames from ``render()`` unless they are observations); ``state`` as in
        :class:`~envs.latent.encoded_observations.EncodedObservations`."""
        if not is_image_space(env.observation_space):
            env = PixelObservation(env)
        gym.ObservationWrapper.__init__(self, env)
        declared = env.get_wrapper_attr("frame_spec") if env.has_wrapper_attr("frame_spec") else None
        self.encoded = EncodedObservations(
            spec, 1, env.observation_space, env.action_space, [declared], env_name(env), type(self).__name__, state
        )
        self.encoder, self.generator, self.history = self.encoded.encoder, self.encoded.generator, self.encoded.state
        self.observation_space = self.encoded.observation_space

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The latent ``(latent_dim,)`` of one frame (``reset``/``step`` add the history)."""
        return self.encoded.encode(observation[None])[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.encoded.seed(seed)
        frame, info = self.env.reset(seed=seed, options=options)
        return self.encoded.reset(frame[None])[0], info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        return self.encoded.step(frame[None], [action])[0][0], reward, terminated, truncated, info
