"""The true low-dimensional state of image envs whose observations lack it, read from the simulator.

Collection stores ``info["state"]`` next to every frame, and ``train-vae`` reports how well a
linear probe reads it from the latents. Envs with non-image observations get theirs from
:class:`~envs.pixels.PixelObservation` (the observation itself); the envs below get theirs from
:class:`TrueState` and a :class:`StateReader`, which also names each dimension. Collection
records the names in the dataset's collector manifests (``attrs["state_names"]``).

Atari games are read from the console's RAM, at the addresses annotated by AtariARI (Anand et
al., 2019, ``atariari/benchmark/ram_annotations.py``). The values are the raw bytes, each the
object's screen position plus a constant (measured on ALE 0.12.1 against the pixels of
the same frame, frame skip 1): Pong's ``ball_x`` is the ball's left column + 49, ``ball_y`` its
top row + 14 or 15, ``enemy_y`` the enemy paddle's top row + 15; Breakout's ``ball_x`` is the
ball's left column + 49, ``ball_y`` its top row - 9, ``player_x`` the paddle's left column + 47.
Pong's ``player_y`` follows the paddle's top row with correlation 0.999 but a varying offset (4
to 14 rows). While no ball is in play, ``ball_y`` reads 0 in both games and ``ball_x`` keeps its
last value (0 before the first serve): a jump a linear probe cannot follow.

>>> state_names(EnvConfig("ALE/Pong-v5"))
('player_y', 'enemy_y', 'ball_x', 'ball_y')
>>> state_names(EnvConfig("ALE/Breakout-v5", backend="envpool"))
('player_x', 'ball_x', 'ball_y')
>>> state_names(EnvConfig("CarRacing-v3", backend="envpool")) is None
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.config import BACKENDS, EnvConfig


@dataclass(frozen=True)
class StateReader:
    """How to read one env's true state, and what its dimensions are called."""

    names: tuple[str, ...]
    """One name per dimension, in order (snake_case)."""
    read: Callable[[gym.Env], np.ndarray]
    """``read(env) -> (len(names),) float32`` after a reset or step; ``env`` is the env as ``gym.make`` makes it."""
    backends: tuple[str, ...] = ("gymnasium",)
    """The backends whose envs it can read."""


def car_racing_state(env: gym.Env) -> np.ndarray:
    """CarRacing's true state: speed (hull velocity norm), angular velocity, hull angle, front-wheel angle."""
    car = env.unwrapped.car  # type: ignore[attr-defined]
    hull = car.hull
    return np.array(
        [np.hypot(*hull.linearVelocity), hull.angularVelocity, hull.angle, car.wheels[0].joint.angle], np.float32
    )


def atari_ram(env: gym.Env) -> np.ndarray:
    """The Atari console's 128 bytes of RAM now: ALE's (Gymnasium) or EnvPool's after its last reset or step."""
    base: Any = env.unwrapped
    ale = getattr(base, "ale", None)
    return ale.getRAM() if ale is not None else base.get_ram()


def ram_bytes(env: gym.Env, addresses: tuple[int, ...]) -> np.ndarray:
    """The RAM bytes at ``addresses`` as float32."""
    return atari_ram(env)[list(addresses)].astype(np.float32)


def ram_state(**addresses: int) -> StateReader:
    """A reader of the named RAM bytes of an Atari game, on both backends.

    >>> ram_state(paddle_x=72).names
    ('paddle_x',)
    """
    read = functools.partial(ram_bytes, addresses=tuple(addresses.values()))
    return StateReader(tuple(addresses), read, backends=BACKENDS)


STATE_READERS: dict[str, StateReader] = {
    "CarRacing-v3": StateReader(("speed", "angular_velocity", "hull_angle", "front_wheel_angle"), car_racing_state),
    "ALE/Pong-v5": ram_state(player_y=51, enemy_y=50, ball_x=49, ball_y=54),
    "ALE/Breakout-v5": ram_state(player_x=72, ball_x=99, ball_y=101),
}
"""True-state readers by env id (names as in AtariARI for the Atari games)."""


def state_reader(config: EnvConfig) -> StateReader | None:
    """The reader of ``config``'s true state on its backend, or None."""
    reader = STATE_READERS.get(config.env_id)
    return reader if reader is not None and config.backend in reader.backends else None


def state_names(config: EnvConfig) -> tuple[str, ...] | None:
    """The names of the true state's dimensions that :func:`state_reader` records for ``config``, or None."""
    reader = state_reader(config)
    return reader.names if reader is not None else None


def missing_state_note(config: EnvConfig) -> str | None:
    """Why ``config`` records no true state although another backend would, or None.

    >>> missing_state_note(EnvConfig("CarRacing-v3", backend="envpool")).endswith("--backend gymnasium to record it")
    True
    >>> missing_state_note(EnvConfig("ALE/Pong-v5", backend="envpool")) is None
    True
    """
    reader = STATE_READERS.get(config.env_id)
    if reader is None or config.backend in reader.backends:
        return None
    return (
        f"{config.env_id} on the {config.backend} backend records no true state ({', '.join(reader.names)}), "
        f"so train-vae reports no linear probe; collect with --backend {' or '.join(reader.backends)} to record it"
    )


class TrueState(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Put ``state_fn(env)`` in ``info["state"]`` after every reset and step."""

    def __init__(self, env: gym.Env, state_fn: Callable[[gym.Env], np.ndarray]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, state_fn=state_fn)
        gym.Wrapper.__init__(self, env)
        self.state_fn = state_fn

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        info["state"] = self.state_fn(self.env)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["state"] = self.state_fn(self.env)
        return obs, reward, terminated, truncated, info
