"""Action policies for collection: a policy is a callable ``(observation, info) -> action`` with ``reset(seed)``.

The collector seeds each episode's policy with the episode's seed, so an episode's actions
depend on nothing else. Policies are built inside worker processes from a picklable
factory ``(action_space) -> Policy`` (a policy class itself is one); a trained agent
plugs in the same way.

>>> import numpy as np
>>> from gymnasium import spaces
>>> policy = BrownianPolicy(spaces.Box(-1.0, 1.0, (3,), np.float32))
>>> policy.reset(seed=0)
>>> first = [policy(None, {}) for _ in range(3)]
>>> policy.reset(seed=0)
>>> all(np.array_equal(a, policy(None, {})) for a in first)
True
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Policy(Protocol):
    """What the collector calls: ``reset(seed)`` before each episode, then once per step."""

    def reset(self, seed: int) -> None: ...

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any: ...


PolicyFactory = Callable[[gym.Space], Policy]
"""Builds a policy for an action space; must be picklable (it is sent to worker processes)."""


class RandomPolicy:
    """Uniformly random actions from the action space (any space type)."""

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = copy.deepcopy(action_space)

    def reset(self, seed: int) -> None:
        self.action_space.seed(seed)

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        return self.action_space.sample()


class BrownianPolicy:
    """Temporally correlated random actions, as in World Models' CarRacing data (ctallec's version).

    The first action is uniform in the bounds; then ``a[t+1] = clip(a[t] + sqrt(dt) * N(0, I))``.
    Needs a ``Box`` action space with finite bounds.
    """

    def __init__(self, action_space: gym.Space, dt: float = 1 / 50) -> None:
        if not isinstance(action_space, spaces.Box) or not action_space.is_bounded("both"):
            raise ValueError(
                f"the brownian policy needs a bounded Box action space, got {action_space}; "
                "use the random policy (or a continuous variant of the env)"
            )
        self.low = action_space.low.astype(np.float64)
        self.high = action_space.high.astype(np.float64)
        self.dtype = action_space.dtype
        self.dt = dt
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.action = self.rng.uniform(self.low, self.high)

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        action = self.action.astype(self.dtype)
        step = np.sqrt(self.dt) * self.rng.standard_normal(self.low.shape)
        self.action = np.clip(self.action + step, self.low, self.high)
        return action


POLICIES: dict[str, PolicyFactory] = {"random": RandomPolicy, "brownian": BrownianPolicy}


def policy_factory(name: str) -> PolicyFactory:
    """The factory of a built-in policy by name.

    >>> policy_factory("random").__name__
    'RandomPolicy'
    """
    if name not in POLICIES:
        raise ValueError(
            f"unknown policy {name!r}: choose one of {sorted(POLICIES)}, or pass the run directory of a "
            "trained agent (`worldmodel train-agent --out RUN_DIR`)"
        )
    return POLICIES[name]
