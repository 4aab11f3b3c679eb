"""The one env factory every stage uses: ``gym.make`` plus per-env presets.

:class:`EnvConfig` says how to make an env (id, ``gym.make`` keywords, frame skip, skipped
start frames, episode limit, render mode) and which :class:`FrameSpec` collection uses by
default. :func:`env_preset` gives the config for an id; :func:`make_env` builds it, with
uint8 HWC frames as observations when ``pixels=True``; :func:`make_env_fn` returns a
picklable builder for subprocess vector envs.

>>> env = make_env("worldmodel/DotTarget-v0")
>>> obs, info = env.reset(seed=0)
>>> obs.shape, info["frames"]
((64, 64, 3), 0)
>>> *_, info = env.step(0)
>>> info["frames"], info["state"].shape
(1, (4,))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from envs.config import EnvConfig, env_preset
from envs.frame_skip import FrameSkip, SkipStartFrames
from envs.pixels import PixelObservation, is_image_space


def car_racing_state(env: gym.Env) -> np.ndarray:
    """CarRacing's true state: speed (hull velocity norm), angular velocity, hull angle, front-wheel angle."""
    car = env.unwrapped.car  # type: ignore[attr-defined]
    hull = car.hull
    return np.array(
        [np.hypot(*hull.linearVelocity), hull.angularVelocity, hull.angle, car.wheels[0].joint.angle], np.float32
    )


STATE_FUNCTIONS: dict[str, Callable[[gym.Env], np.ndarray]] = {"CarRacing-v3": car_racing_state}
"""True-state readers for image envs whose observations do not include it (others use ``info["state"]``)."""


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


def _hint(env_id: str) -> str:
    if env_id.startswith("ALE/"):
        return "Atari ids need the atari extra: pip install 'worldmodel[atari]' (ale-py)"
    if env_id.startswith("worldmodel/"):
        return "the worldmodel/* ids are registered by `import envs`"
    return "check the id against gymnasium.pprint_registry(); worldmodel/* ids come with `import envs`"


def gym_make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` that registers the project's and Atari ids first and adds a hint to unknown ids."""
    import envs  # noqa: F401  (registers worldmodel/* ids; a no-op when already imported)

    if env_id.startswith("ALE/"):
        try:
            import ale_py
        except ImportError as exc:
            raise gym.error.NamespaceNotFound(f"cannot make {env_id}: {_hint(env_id)}") from exc
        gym.register_envs(ale_py)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as exc:
        raise type(exc)(f"{exc} Hint: {_hint(env_id)}") from exc
    except TypeError as exc:  # a keyword the env's constructor does not take
        raise ValueError(f"cannot make {env_id}: {exc}; check --env-kwargs") from exc


def make_env(config: EnvConfig | str, *, pixels: bool = True) -> gym.Env:
    """Make the env ``config`` describes (a string means :func:`env_preset`).

    Wrapper order: ``gym.make`` (with its time limit), true state (CarRacing), skipped start
    frames, frame skip, then with ``pixels`` :class:`~envs.pixels.PixelObservation`. With
    ``backend="envpool"`` the base env is :class:`envs.envpool.env.EnvPoolEnv` (no true state).
    """
    if isinstance(config, str):
        config = env_preset(config)
    if config.backend == "envpool":
        return _make_envpool_env(config, pixels=pixels)
    kwargs = dict(config.env_kwargs)
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    render_mode = config.render_mode
    env = gym_make(config.env_id, render_mode=render_mode, **kwargs)
    if pixels and render_mode is None and not is_image_space(env.observation_space):
        if "rgb_array" not in env.metadata.get("render_modes", []):
            env.close()
            raise ValueError(
                f"{config.env_id} has neither image observations (observation space {env.observation_space}) "
                f"nor an rgb_array render mode (render modes: {env.metadata.get('render_modes', [])}), "
                "so it offers no pixels to collect"
            )
        env.close()
        env = gym_make(config.env_id, render_mode="rgb_array", **kwargs)
    if config.env_id in STATE_FUNCTIONS:
        env = TrueState(env, STATE_FUNCTIONS[config.env_id])
    if config.skip_start_frames:
        env = SkipStartFrames(env, config.skip_start_frames)
    env = FrameSkip(env, config.frame_skip)
    return PixelObservation(env) if pixels else env


def _make_envpool_env(config: EnvConfig, *, pixels: bool) -> gym.Env:
    """EnvPool's env with the same preset wrappers (its frames are its observations; no true state)."""
    from envs.envpool.env import EnvPoolEnv

    env: gym.Env = EnvPoolEnv(config)
    if config.skip_start_frames:
        env = SkipStartFrames(env, config.skip_start_frames)
    env = FrameSkip(env, env.unwrapped.spec_envpool.frame_skip_outside)
    return PixelObservation(env) if pixels else env


def _make_in_worker(config: EnvConfig, pixels: bool) -> gym.Env:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    return make_env(config, pixels=pixels)


def make_env_fn(config: EnvConfig | str, *, pixels: bool = True) -> Callable[[], gym.Env]:
    """A picklable ``() -> env`` for ``SubprocVecEnv`` / ``AsyncVectorEnv``; one torch and cv2 thread per worker.

    >>> import pickle
    >>> fn = pickle.loads(pickle.dumps(make_env_fn("worldmodel/DotTarget-v0")))
    >>> fn.args[0].env_id
    'worldmodel/DotTarget-v0'
    """
    if isinstance(config, str):
        config = env_preset(config)
    return functools.partial(_make_in_worker, config, pixels)
