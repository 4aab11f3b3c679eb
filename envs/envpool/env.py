"""EnvPool as a backend: which ids it runs, how a preset maps onto it, and one env as a Gymnasium env.

EnvPool (``pip install 'worldmodel[envpool]'``) steps C++ ports of CarRacing-v3 and the Atari
games, about 5x faster than Gymnasium's Python CarRacing per core. :func:`envpool_spec` maps an
:class:`~envs.config.EnvConfig` onto ``envpool.make`` keywords and refuses, with the reason,
any option EnvPool cannot honour (discrete CarRacing, ``domain_randomize``, ...) rather than
silently run another env. :class:`EnvPoolEnv` is one such env behind the Gymnasium API, so the
factory's wrappers (skipped start frames, frame skip), collection workers and evaluation
use it unchanged; :class:`envs.envpool.vec_env.EnvPoolVecEnv` steps a whole batch for training.

Known differences from Gymnasium (measured in ``experiments/reports/envpool/README.md``):
CarRacing's tracks come from EnvPool's own generator (the same seed gives another track than
Gymnasium's), it renders with OpenCV rather than pygame, and it has no discrete mode or true
state. Atari frames are max-pooled over the last two frames of each skip (ALE v5 in Gymnasium
returns the last frame), and the same seed plays another game (EnvPool's emulator RNG is its own);
the console's RAM comes with every step, so Atari's true state (:mod:`envs.true_state`) is
recorded on both backends.

>>> spec = envpool_spec(EnvConfig("CarRacing-v3", frame_skip=2, skip_start_frames=50, backend="envpool"))
>>> spec.task_id, spec.frame_skip_outside, spec.kwargs["max_episode_steps"]
('CarRacing-v3', 2, 1000)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from envs.config import ATARI_V5_KWARGS, EnvConfig
from worldmodel.common.errors import UserError

CAR_RACING_MAX_STEPS = 1000
ATARI_KWARGS = ("frameskip", *ATARI_V5_KWARGS)
"""The ALE v5 keywords EnvPool can honour (``frameskip`` only as 1: EnvPool repeats by the preset's frame skip)."""


class EnvPoolUnavailableError(UserError, ImportError):
    """EnvPool is not installed, or cannot run the requested env as the preset describes it."""


def import_envpool() -> Any:
    """The ``envpool`` module, or an error that names the extra to install."""
    try:
        import envpool
    except ImportError as exc:
        raise EnvPoolUnavailableError(
            "--backend envpool needs the envpool package: pip install 'worldmodel[envpool]' (Linux x86-64 wheels); "
            "or use --backend gymnasium"
        ) from exc
    return envpool


@dataclass(frozen=True)
class EnvPoolSpec:
    """How to make an :class:`EnvConfig` with EnvPool."""

    task_id: str
    """EnvPool's id, e.g. ``CarRacing-v3``, ``Pong-v5``."""
    kwargs: dict[str, Any]
    """Keywords for ``envpool.make`` besides the batch and seeds."""
    frame_skip_inside: int
    """Frames EnvPool itself repeats each action (Atari: the preset's frame skip)."""
    frame_skip_outside: int
    """Frames the caller repeats each action (CarRacing: the preset's frame skip)."""
    channels_first: bool
    """EnvPool returns CHW frames (Atari); the backends hand out HWC."""


def _unsupported(config: EnvConfig, keys: list[str], why: str) -> None:
    if keys:
        raise ValueError(
            f"EnvPool's {config.env_id} does not support {', '.join(sorted(keys))} ({why}); "
            "drop the option or use --backend gymnasium"
        )


def envpool_spec(config: EnvConfig) -> EnvPoolSpec:
    """Map ``config`` onto EnvPool, or raise ``ValueError`` naming what EnvPool cannot do."""
    if config.render_mode not in (None, "rgb_array"):
        raise ValueError(f"EnvPool envs only render rgb_array frames, got render_mode={config.render_mode!r}")
    if config.env_id == "CarRacing-v3":
        _unsupported(config, list(config.env_kwargs), "EnvPool's CarRacing is continuous, without domain randomisation")
        return EnvPoolSpec(
            "CarRacing-v3",
            {"max_episode_steps": config.max_episode_steps or CAR_RACING_MAX_STEPS},
            frame_skip_inside=1,
            frame_skip_outside=config.frame_skip,
            channels_first=False,
        )
    if config.env_id.startswith("ALE/") and config.env_id.endswith("-v5"):
        kwargs = {**ATARI_V5_KWARGS, **config.env_kwargs}  # ALE v5's defaults where the config leaves them out
        _unsupported(config, [k for k in kwargs if k not in ATARI_KWARGS], "EnvPool maps only ALE v5's own options")
        if kwargs.get("frameskip", 1) != 1:
            raise ValueError("EnvPool's Atari repeats actions by the preset's frame_skip; drop env_kwargs frameskip")
        max_frames = kwargs["max_num_frames_per_episode"]
        if config.max_episode_steps is not None:
            max_frames = min(max_frames, config.max_episode_steps)
        return EnvPoolSpec(
            config.env_id.removeprefix("ALE/"),
            {
                "frame_skip": config.frame_skip,
                "repeat_action_probability": kwargs["repeat_action_probability"],
                "full_action_space": kwargs["full_action_space"],
                "max_episode_steps": max(1, max_frames // config.frame_skip),
                "img_height": 210,
                "img_width": 160,
                "gray_scale": False,
                "stack_num": 1,
                "noop_max": 1,
                "use_fire_reset": False,
                "episodic_life": False,
                "reward_clip": False,
            },  # fmt: skip  (raw ALE v5 frames: no resizing, stacking, no-op starts, life loss or clipping)
            frame_skip_inside=config.frame_skip,
            frame_skip_outside=1,
            channels_first=True,
        )
    raise ValueError(
        f"--backend envpool runs CarRacing-v3 and ALE/*-v5 ids; {config.env_id} is not one of them "
        "(EnvPool's other envs render no frames). Use --backend gymnasium"
    )


def available_cores() -> int:
    """CPU cores this process may use (more EnvPool threads than cores only contend)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_envpool(spec: EnvPoolSpec, seeds: list[int], num_threads: int | None = None) -> Any:
    """An EnvPool batch of ``len(seeds)`` envs, env ``i`` seeded ``seeds[i]`` (Gymnasium API, synchronous).

    ``num_threads`` defaults to one per env up to the usable cores.
    """
    envpool = import_envpool()
    with _float64_bounds_quiet():
        return envpool.make(
            spec.task_id,
            env_type="gymnasium",
            num_envs=len(seeds),
            batch_size=len(seeds),
            num_threads=num_threads or min(len(seeds), available_cores()),
            seed=int(seeds[0]),
            env_seed=[int(s) for s in seeds],
            **spec.kwargs,
        )


@contextlib.contextmanager
def _float64_bounds_quiet() -> Iterator[None]:
    """EnvPool's Box bounds are float64: Gymnasium warns each time it casts them to float32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def pool_spaces(pool: Any, spec: EnvPoolSpec) -> tuple[gym.spaces.Box, gym.spaces.Space]:
    """Observation (HWC uint8) and action spaces of one env of ``pool``."""
    with _float64_bounds_quiet():
        shape = pool.observation_space.shape
        action_space = pool.action_space
    if spec.channels_first:
        shape = (shape[1], shape[2], shape[0])
    if isinstance(action_space, gym.spaces.Box):
        low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
        action_space = gym.spaces.Box(low, high, dtype=np.float32)
    return gym.spaces.Box(0, 255, shape, np.uint8), action_space


def to_hwc(frames: np.ndarray, spec: EnvPoolSpec) -> np.ndarray:
    """EnvPool's batch of frames as uint8 ``(N, H, W, C)``."""
    return np.ascontiguousarray(frames.transpose(0, 2, 3, 1)) if spec.channels_first else frames


class EnvPoolEnv(gym.Env):
    """One EnvPool env behind the Gymnasium API; ``reset(seed=s)`` starts exactly the episode EnvPool seeds ``s``.

    EnvPool seeds an env once, when it is made; this wrapper makes a fresh one-env pool on each
    seeded reset (microseconds), so per-episode seeds work as they do in Gymnasium. Frame skip
    done inside EnvPool (Atari) is reported as ``info["frames"]``; Atari's RAM after the last
    reset or step is :meth:`get_ram`.

    >>> env = EnvPoolEnv(EnvConfig("CarRacing-v3", backend="envpool"))  # doctest: +SKIP
    >>> env.reset(seed=0)[0].shape  # doctest: +SKIP
    (96, 96, 3)
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        self.spec_envpool = envpool_spec(config)
        self.render_mode = "rgb_array"
        self._pool = make_envpool(self.spec_envpool, [0])
        self.observation_space, self.action_space = pool_spaces(self._pool, self.spec_envpool)
        self._frame: np.ndarray | None = None
        self._ram: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._frame is None:  # unseeded first reset: a seed from Gymnasium's np_random
            episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
            self._pool = make_envpool(self.spec_envpool, [episode_seed], num_threads=1)
        obs, pool_info = self._pool.reset()
        self._keep(obs, pool_info)
        return self._frame, {}

    def step(self, action):
        obs, reward, terminated, truncated, pool_info = self._pool.step(np.asarray(action)[None])
        self._keep(obs, pool_info)
        info = {"frames": self.spec_envpool.frame_skip_inside}
        return self._frame, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def _keep(self, obs: np.ndarray, pool_info: dict[str, Any]) -> None:
        self._frame = to_hwc(obs, self.spec_envpool)[0]
        self._ram = pool_info["ram"][0] if "ram" in pool_info else None

    def get_ram(self) -> np.ndarray:
        """The Atari console's 128 bytes of RAM after the last reset or step (uint8), as ALE's ``getRAM()``."""
        if self._frame is None:
            raise RuntimeError("no RAM before the first reset(); call reset() first")
        if self._ram is None:
            raise EnvPoolUnavailableError(
                f"EnvPool's {self.config.env_id} reports no RAM (its Atari games do in envpool 1.2.5); "
                "use --backend gymnasium to record the true state"
            )
        return self._ram

    def render(self) -> np.ndarray | None:
        return self._frame

    def close(self) -> None:
        self._pool = None
