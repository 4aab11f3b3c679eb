"""Frame skip and skipping the first frames of an episode, both counting base-env frames.

Every step's ``info["frames"]`` is the number of base-env frames it consumed, and
``reset``'s ``info["frames"]`` the number consumed while skipping the episode's start, so
each stage can report env frames as well as agent steps.

>>> import gymnasium as gym
>>> import envs  # registers the toy ids
>>> env = FrameSkip(SkipStartFrames(gym.make("worldmodel/DotTarget-v0"), 3), 2)
>>> _, info = env.reset(seed=0)
>>> info["frames"]
3
>>> *_, info = env.step(0)
>>> info["frames"]
2
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def noop_action(space: gym.Space) -> Any:
    """A "do nothing" action: zeros (clipped into the bounds) for ``Box``, 0 for ``Discrete``."""
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, space.dtype), space.low, space.high)
    if isinstance(space, spaces.Discrete):
        return space.start
    raise TypeError(f"no no-op action is defined for {space}; use a Box or Discrete action space")


class FrameSkip(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeat each action ``skip`` times, summing rewards; stop early when the episode ends."""

    def __init__(self, env: gym.Env, skip: int) -> None:
        if skip < 1:
            raise ValueError(f"frame skip must be >= 1, got {skip}")
        gym.utils.RecordConstructorArgs.__init__(self, skip=skip)
        gym.Wrapper.__init__(self, env)
        self.skip = skip

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info.setdefault("frames", 0)
        return obs, info

    def step(self, action):
        total, frames = 0.0, 0
        for _ in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            frames += int(info.get("frames", 1))  # an env that skips frames itself (EnvPool's Atari) says how many
            if terminated or truncated:
                break
        info["frames"] = frames
        return obs, total, terminated, truncated, info


class SkipStartFrames(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """After each reset, take ``frames`` no-op steps (e.g. CarRacing's zoom-in) before the episode starts.

    Rewards of those steps are dropped; ``reset``'s ``info["frames"]`` counts them.
    """

    def __init__(self, env: gym.Env, frames: int) -> None:
        if frames < 0:
            raise ValueError(f"skip_start_frames must be >= 0, got {frames}")
        gym.utils.RecordConstructorArgs.__init__(self, frames=frames)
        gym.Wrapper.__init__(self, env)
        self.frames = frames
        self._noop = noop_action(env.action_space) if frames else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        for done_frames in range(1, self.frames + 1):
            obs, _reward, terminated, truncated, info = self.env.step(self._noop)
            if terminated or truncated:
                raise RuntimeError(
                    f"the episode ended during the {self.frames} skipped start frames (after {done_frames}); "
                    "lower skip_start_frames"
                )
        info["frames"] = self.frames
        return obs, info
