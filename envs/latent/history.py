"""Per-env stacks of the last k latents and, optionally, the previous action.

Shared by the three latent observation wrappers (single env, SB3 ``VecEnv``,
``gymnasium.vector``) so they build identical observations. An observation is laid out
oldest first: ``[z_{t-k+1}, ..., z_t, a_{t-1}]``, the action flattened as by
``gymnasium.spaces.flatten`` (one-hot for ``Discrete``). At an episode start every slot
holds the first latent (a still scene, as Gymnasium's ``FrameStackObservation`` pads by
default) and the previous action is zeros.

>>> import numpy as np
>>> from gymnasium import spaces
>>> history = LatentHistory(num_envs=1, latent_dim=2, history=2, action_space=spaces.Discrete(3))
>>> history.reset(np.array([[1.0, 2.0]]))
array([[1., 2., 1., 2., 0., 0., 0.]], dtype=float32)
>>> history.push(np.array([[3.0, 4.0]]), np.array([2]))
array([[1., 2., 3., 4., 0., 0., 1.]], dtype=float32)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class LatentHistory:
    """Observation buffers ``(num_envs, history * latent_dim + action_dim)`` float32."""

    def __init__(self, num_envs: int, latent_dim: int, history: int = 1, action_space: gym.Space | None = None) -> None:
        if int(history) != history or history < 1:
            raise ValueError(f"history must be a positive integer number of latents, got {history!r}")
        self.num_envs = num_envs
        self.latent_dim = latent_dim
        self.history = int(history)
        self.action_space = action_space
        self.action_dim = spaces.flatdim(action_space) if action_space is not None else 0
        self._stack_dim = self.history * latent_dim
        self._buffer = np.zeros((num_envs, self._stack_dim + self.action_dim), dtype=np.float32)

    @property
    def observation_space(self) -> spaces.Box:
        """``Box(-inf, inf, (history * latent_dim + action_dim,), float32)`` for one env."""
        return spaces.Box(-np.inf, np.inf, (self._buffer.shape[1],), dtype=np.float32)

    def reset(self, latents: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes: fill the rows in ``mask`` (all when None) from ``latents`` ``(num_envs, d)``.

        Returns a copy of all observations.
        """
        rows = slice(None) if mask is None else np.asarray(mask, dtype=bool)
        self._buffer[rows, : self._stack_dim] = np.tile(latents[rows], self.history)
        self._buffer[rows, self._stack_dim :] = 0.0
        return self._buffer.copy()

    def push(self, latents: np.ndarray, actions: Any = None) -> np.ndarray:
        """Append each env's new latent (dropping its oldest) and record the actions that led to it.

        Returns a copy of all observations.
        """
        d = self.latent_dim
        self._buffer[:, : self._stack_dim - d] = self._buffer[:, d : self._stack_dim]
        self._buffer[:, self._stack_dim - d : self._stack_dim] = latents
        if self.action_dim:
            self._buffer[:, self._stack_dim :] = [spaces.flatten(self.action_space, a) for a in actions]
        return self._buffer.copy()
