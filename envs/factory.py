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

from envs.config import EnvConfig, env_preset
from envs.frame_skip import FrameSkip, SkipStartFrames
from envs.pixels import PixelObservation, is_image_space
from envs.true_state import TrueState, state_reader


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

    Wrapper order: ``gym.make`` (with its time limit), true state (:mod:`envs.true_state`:
    CarRacing, Pong, Breakout), skipped start frames, frame skip, then with ``pixels``
    :class:`~envs.pixels.PixelObservation`. With ``backend="envpool"`` the base env is
    :class:`envs.envpool.env.EnvPoolEnv` (true state for the Atari games only).
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
    return _add_preset_wrappers(env, config, config.frame_skip, pixels=pixels)


def _make_envpool_env(config: EnvConfig, *, pixels: bool) -> gym.Env:
    """EnvPool's env with the same preset wrappers (its frames are its observations)."""
    from envs.envpool.env import EnvPoolEnv

    env = EnvPoolEnv(config)
    return _add_preset_wrappers(env, config, env.spec_envpool.frame_skip_outside, pixels=pixels)


def _add_preset_wrappers(env: gym.Env, config: EnvConfig, frame_skip: int, *, pixels: bool) -> gym.Env:
    """True state, skipped start frames, frame skip and pixels around the base env, in this order."""
    reader = state_reader(config)
    if reader is not None:
        env = TrueState(env, reader.read)
    if config.skip_start_frames:
        env = SkipStartFrames(env, config.skip_start_frames)
    env = FrameSkip(env, frame_skip)
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
