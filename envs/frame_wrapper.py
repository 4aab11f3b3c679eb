"""Apply a :class:`~worldmodel.frames.FrameSpec` to each observation frame inside one env.

Put it inside each sub-env of a ``SubprocVecEnv`` / ``AsyncVectorEnv`` so that worker
processes crop and resize, and only small frames travel to the main process, where the
batched latent wrappers encode them. The latent wrappers see the ``frame_spec``
attribute and skip their own preprocessing when it equals the checkpoint's.

>>> import gymnasium as gym
>>> import envs  # registers the toy ids
>>> env = FrameSpecObservation(gym.make("worldmodel/DotTarget-v0"), {"height": 32, "width": 32})
>>> env.observation_space.shape
(32, 32, 3)
>>> env.reset(seed=0)[0].shape
(32, 32, 3)
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.pixels import env_name, is_image_space
from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import read_frame_spec


def as_frame_spec(frame_spec: FrameSpec | dict[str, Any] | str | os.PathLike) -> FrameSpec:
    """A FrameSpec from itself, its dict form (YAML-friendly) or a VAE checkpoint path (its spec)."""
    if isinstance(frame_spec, FrameSpec):
        return frame_spec
    if isinstance(frame_spec, dict):
        return FrameSpec.from_dict(frame_spec)
    return read_frame_spec(frame_spec)


class FrameSpecObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observation = ``frame_spec.apply(frame)``: uint8 ``frame_spec.shape`` frames.

    Args:
        env: an env with uint8 image observations; for render-based envs wrap it in
            :class:`envs.pixels.PixelObservation` first.
        frame_spec: a :class:`FrameSpec`, its dict form, or a VAE checkpoint path whose
            spec to use (so an rl-zoo ``env_wrapper`` entry needs only the path).
    """

    def __init__(self, env: gym.Env, frame_spec: FrameSpec | dict[str, Any] | str | os.PathLike) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, frame_spec=frame_spec)
        gym.ObservationWrapper.__init__(self, env)
        if not is_image_space(env.observation_space):
            raise ValueError(
                f"FrameSpecObservation needs uint8 image observations, but {env_name(env)} has "
                f"{env.observation_space}; wrap it in envs.PixelObservation first (frames from render())"
            )
        self.frame_spec = as_frame_spec(frame_spec)
        shape = env.observation_space.shape
        self.frame_spec.check_source(shape if len(shape) == 3 else (*shape, 1))
        self.observation_space = spaces.Box(0, 255, self.frame_spec.shape, dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.frame_spec.apply(observation)
