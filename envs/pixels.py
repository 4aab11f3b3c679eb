"""Pixels from any Gymnasium env: image observations as they are, or ``render()`` frames.

>>> import gymnasium as gym
>>> env = PixelObservation(gym.make("CartPole-v1", render_mode="rgb_array"))
>>> env.observation_space.shape, env.observation_space.dtype
((400, 600, 3), dtype('uint8'))
>>> obs, info = env.reset(seed=0)
>>> obs.shape, info["state"].shape
((400, 600, 3), (4,))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def is_image_space(space: gym.Space) -> bool:
    """True for a uint8 ``Box`` shaped ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[2] in (1, 3)))
    )


def env_name(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


def needs_render(env: gym.Env) -> bool:
    """True when frames must come from ``render()``; raises if the env offers no pixels at all."""
    if is_image_space(env.observation_space):
        return False
    if env.render_mode != "rgb_array":
        raise ValueError(
            f"{env_name(env)} has no image observations (observation space {env.observation_space}) "
            f"and render_mode={env.render_mode!r}, so it offers no pixels; make it with "
            f"gym.make({env_name(env)!r}, render_mode='rgb_array') so frames come from render()"
        )
    return True


class PixelObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Make the observation the env's uint8 HWC frame.

    Image observations pass through unchanged (a 2-D grayscale image gains a channel
    axis). For other envs, which must have ``render_mode="rgb_array"``, the observation
    is ``render()`` and the original low-dimensional observation moves to
    ``info["state"]`` (diagnostics probe latents against it). The env is reset once in
    ``__init__`` to learn the frame shape, as Gymnasium's ``AddRenderObservation`` does.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        self.from_render = needs_render(env)
        if self.from_render:
            env.reset()
            frame = env.render()
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
                raise TypeError(f"{env_name(env)}.render() must return a uint8 image array, got {type(frame)}")
            shape = frame.shape
        else:
            shape = env.observation_space.shape
        if len(shape) == 2:
            shape = (*shape, 1)
        self.observation_space = spaces.Box(0, 255, shape, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self.from_render:
            info["state"] = np.asarray(obs, dtype=np.float32)
        return self.observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.from_render:
            info["state"] = np.asarray(obs, dtype=np.float32)
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation: Any) -> np.ndarray:
        frame = self.env.render() if self.from_render else observation
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise ValueError(f"{env_name(self.env)} produced a frame of dtype {frame.dtype}; expected uint8")
        return frame[:, :, None] if frame.ndim == 2 else frame
