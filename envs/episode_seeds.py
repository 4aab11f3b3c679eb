"""Reset each coming episode from a seed given in advance, so that episode *i* of an evaluation is the same
episode whatever the number of envs running it.

A vectorised env resets finished episodes by itself, without a seed; :class:`EpisodeSeeds`
makes those resets take the next of the seeds queued with ``set_episode_seeds`` (a seed the
reset passes is overridden while the queue lasts; then resets run as without the wrapper).

>>> import gymnasium as gym
>>> env = EpisodeSeeds(gym.make("CartPole-v1"))
>>> env.set_episode_seeds([5, 6])
>>> first, _ = env.reset()
>>> second, _ = env.reset(seed=123)  # the queue wins
>>> bool((first == gym.make("CartPole-v1").reset(seed=5)[0]).all())
True
>>> bool((second == gym.make("CartPole-v1").reset(seed=6)[0]).all())
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import gymnasium as gym


class EpisodeSeeds(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Seed the next resets from a queue (see the module docstring); without one, a plain pass-through."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self._seeds: deque[int] = deque()

    def set_episode_seeds(self, seeds: Iterable[int]) -> None:
        """The seeds of the next resets, in order (replacing any not used yet)."""
        self._seeds = deque(int(seed) for seed in seeds)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if self._seeds:
            seed = self._seeds.popleft()
        return self.env.reset(seed=seed, options=options)
