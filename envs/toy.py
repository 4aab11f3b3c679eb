"""DotTarget: a small, fast, seeded pixel env for tests and quick checks.

A red square (the agent) must reach a blue square (the target) on a 64x64 black canvas.
Both squares are 16 px wide and saturated, so they stay 4 px wide in 16x16 frames and an
MSE-trained VAE picks up their positions within a few thousand steps (with 8 px squares
on grey, a small VAE spends that long reconstructing only the background). Reward:
the decrease in distance to the target (in canvas widths) each step, minus 0.01, plus
1.0 on reaching it (terminated). Episodes are truncated after 100 steps by the
registered ``TimeLimit``. ``info["state"]`` holds the true state
``(agent_x, agent_y, target_x, target_y)`` in [0, 1] for latent probes.

Registered ids: ``worldmodel/DotTarget-v0`` (5 discrete actions: stay, up, down, left,
right) and ``worldmodel/DotTargetContinuous-v0`` (a velocity in [-1, 1]^2).

>>> import gymnasium as gym
>>> import envs  # registers the ids
>>> env = gym.make("worldmodel/DotTarget-v0")
>>> obs, info = env.reset(seed=0)
>>> obs.shape, obs.dtype, env.action_space
((64, 64, 3), dtype('uint8'), Discrete(5))
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SIZE = 64
SQUARE = 16
SPEED = 4.0
BACKGROUND = (0, 0, 0)
AGENT_COLOUR = (255, 0, 0)
TARGET_COLOUR = (0, 0, 255)
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.float32)  # (dx, dy) per discrete action


class DotTargetEnv(gym.Env):
    """Move the red square onto the blue one; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, continuous: bool = False, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"DotTarget supports render_mode None or 'rgb_array', got {render_mode!r}")
        self.continuous = continuous
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32) if continuous else spaces.Discrete(len(MOVES))
        self._background = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
        self._background[:] = BACKGROUND
        self._agent = np.zeros(2, dtype=np.float32)
        self._target = np.zeros(2, dtype=np.float32)

    def _random_position(self) -> np.ndarray:
        return self.np_random.uniform(0, SIZE - SQUARE, size=2).astype(np.float32)

    def _distance(self) -> float:
        return float(np.linalg.norm(self._agent - self._target)) / SIZE

    def _frame(self) -> np.ndarray:
        frame = self._background.copy()
        for (x, y), colour in ((self._target, TARGET_COLOUR), (self._agent, AGENT_COLOUR)):
            xi, yi = round(float(x)), round(float(y))
            frame[yi : yi + SQUARE, xi : xi + SQUARE] = colour
        return frame

    def _info(self) -> dict[str, Any]:
        return {"state": np.concatenate([self._agent, self._target]) / (SIZE - SQUARE)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._agent = self._random_position()
        self._target = self._random_position()
        while self._distance() < 1.5 * SQUARE / SIZE:
            self._target = self._random_position()
        return self._frame(), self._info()

    def step(self, action):
        if self.continuous:
            move = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        else:
            move = MOVES[int(action)]
        before = self._distance()
        self._agent = np.clip(self._agent + SPEED * move, 0, SIZE - SQUARE)
        after = self._distance()
        reached = after < SQUARE / (2 * SIZE)
        reward = (before - after) - 0.01 + (1.0 if reached else 0.0)
        return self._frame(), float(reward), bool(reached), False, self._info()

    def render(self) -> np.ndarray | None:
        return self._frame() if self.render_mode == "rgb_array" else None


def register_toy_envs() -> None:
    """Register the DotTarget ids with Gymnasium (idempotent)."""
    for env_id, continuous in (("worldmodel/DotTarget-v0", False), ("worldmodel/DotTargetContinuous-v0", True)):
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="envs.toy:DotTargetEnv",
                max_episode_steps=100,
                kwargs={"continuous": continuous},
            )
