"""An SB3 ``VecEnv`` over an EnvPool batch, with the factory's presets applied to the whole batch.

``EnvPoolVecEnv(config, n_envs, seed)`` steps ``n_envs`` EnvPool envs in C++ threads and
behaves as SB3's ``DummyVecEnv`` over ``Monitor``-wrapped envs made by
:func:`envs.factory.make_env` does:

- frame skip: each agent action is repeated ``config.frame_skip`` frames, rewards summed, an
  env stopping at its episode end (the others go on: EnvPool steps any subset of its envs);
- skipped start frames: ``config.skip_start_frames`` no-op frames after every reset;
- episode ends: the returned observation is the next episode's first, the last one is in
  ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]`` marks a time limit,
  and ``infos[i]["episode"]`` holds ``{"r", "l", "t"}`` as ``Monitor`` writes it;
- seeding: env ``i`` starts from ``seed + i``; ``venv.seed(s)`` re-seeds at the next reset;
- frames: ``frame_spec`` is applied to the batch here, in the main process, by
  :func:`worldmodel.frames.preprocess_frames`; ``infos[i]["frames"]`` counts base-env frames.

``VecLatentObservation``, ``VecNormalize``, ``VecFrameStack`` and ``VecTransposeImage`` stack on
it as on any VecEnv.

>>> from envs.config import env_preset
>>> venv = EnvPoolVecEnv(env_preset("CarRacing-v3").replace(backend="envpool"), n_envs=2, seed=0)  # doctest: +SKIP
>>> venv.reset().shape  # doctest: +SKIP
(2, 64, 64, 3)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from envs.config import EnvConfig
from envs.envpool.env import envpool_spec, make_envpool, pool_spaces, to_hwc
from envs.frame_skip import noop_action
from worldmodel.frames import FrameSpec, preprocess_frames


class EnvPoolVecEnv(VecEnv):
    """``n_envs`` EnvPool envs as one SB3 VecEnv (see the module docstring)."""

    def __init__(
        self,
        config: EnvConfig,
        n_envs: int,
        seed: int = 0,
        *,
        frame_spec: FrameSpec | None = None,
        num_threads: int | None = None,
    ) -> None:
        self.config = config
        self.spec_envpool = envpool_spec(config)
        self.frame_spec = frame_spec if frame_spec is not None else config.frame_spec
        self.num_threads = num_threads
        self._pool = make_envpool(self.spec_envpool, [seed + i for i in range(n_envs)], num_threads)
        raw_space, action_space = pool_spaces(self._pool, self.spec_envpool)
        self.frame_spec.check_source(raw_space.shape)
        self.raw_observation_space = raw_space
        observation_space = gym.spaces.Box(0, 255, self.frame_spec.shape, np.uint8)
        super().__init__(n_envs, observation_space, action_space)
        self._noop = np.stack([noop_action(action_space)] * n_envs)
        self._raw = np.zeros((n_envs, *raw_space.shape), np.uint8)
        self._returns = np.zeros(n_envs)
        self._lengths = np.zeros(n_envs, dtype=np.int64)
        self._episode_start = np.full(n_envs, time.monotonic())
        self._t_start = time.monotonic()
        self._actions: np.ndarray | None = None

    # -- EnvPool calls on a subset of envs ------------------------------------------------------

    def _step(self, actions: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step envs ``ids``; results in the order of ``ids``."""
        obs, reward, terminated, truncated, info = self._pool.step(actions, env_id=ids)
        if not np.array_equal(info["env_id"], ids):  # synchronous pools answer in order; reorder if not
            position = {int(e): k for k, e in enumerate(info["env_id"])}
            order = np.array([position[int(e)] for e in ids])
            obs, reward, terminated, truncated = obs[order], reward[order], terminated[order], truncated[order]
        return to_hwc(obs, self.spec_envpool), reward, terminated, truncated

    def _reset_envs(self, ids: np.ndarray) -> None:
        """Reset envs ``ids`` and play their skipped start frames; their frames land in ``self._raw``."""
        obs, info = self._pool.reset(env_id=ids)
        self._raw[info["env_id"]] = to_hwc(obs, self.spec_envpool)
        for _ in range(self.config.skip_start_frames):
            obs, _reward, terminated, truncated = self._step(self._noop[ids], ids)
            if (terminated | truncated).any():
                raise RuntimeError(
                    f"an episode ended during the {self.config.skip_start_frames} skipped start frames; "
                    "lower skip_start_frames"
                )
            self._raw[ids] = obs
        self._returns[ids] = 0.0
        self._lengths[ids] = 0
        self._episode_start[ids] = time.monotonic()

    def _observe(self, raw: np.ndarray) -> np.ndarray:
        return preprocess_frames(raw, self.frame_spec)

    # -- the VecEnv API ------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        if any(s is not None for s in self._seeds):
            base = int(self._seeds[0])  # type: ignore[arg-type]
            seeds = [s if s is not None else base + i for i, s in enumerate(self._seeds)]
            self._pool = make_envpool(self.spec_envpool, seeds, self.num_threads)  # EnvPool seeds at creation
        self._reset_seeds()
        self._reset_options()
        self._reset_envs(np.arange(self.num_envs))
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._observe(self._raw)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        if isinstance(self.action_space, gym.spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high).astype(np.float32)
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async first"
        n = self.num_envs
        rewards = np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        frames = np.zeros(n, np.int64)
        active = np.arange(n)
        for _ in range(self.spec_envpool.frame_skip_outside):
            obs, reward, term, trunc = self._step(self._actions[active], active)
            self._raw[active] = obs
            rewards[active] += reward
            terminated[active], truncated[active] = term, trunc
            frames[active] += self.spec_envpool.frame_skip_inside
            active = active[~(term | trunc)]
            if len(active) == 0:
                break
        self._returns += rewards
        self._lengths += 1
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{"frames": int(f)} for f in frames]
        ended = np.flatnonzero(dones)
        if len(ended):
            terminal = self._observe(self._raw[ended])
            now = time.monotonic()
            for k, i in enumerate(ended):
                infos[i]["terminal_observation"] = terminal[k]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i]["episode"] = {
                    "r": float(self._returns[i]),
                    "l": int(self._lengths[i]),
                    "t": round(now - self._t_start, 6),
                }
            self._reset_envs(ended)
        return self._observe(self._raw), rewards, dones, infos

    def close(self) -> None:
        self._pool = None

    def get_images(self) -> Sequence[np.ndarray | None]:
        """The latest raw frame of each env (what ``render`` tiles)."""
        return list(self._raw)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attributes every env shares (``render_mode``, ``frame_spec``, ``spec``, the spaces, ``last_frame``...)."""
        ids = list(self._get_indices(indices))
        if attr_name == "last_frame":
            return [self._raw[i] for i in ids]
        shared = {
            "render_mode": "rgb_array",
            "frame_spec": self.frame_spec,  # frames leave already preprocessed, as FrameSpecObservation declares
            "spec": None,
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "metadata": {"render_modes": ["rgb_array"]},
        }
        if attr_name not in shared:
            raise AttributeError(f"EnvPoolVecEnv's envs have no attribute {attr_name!r}")
        return [shared[attr_name] for _ in ids]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"EnvPool envs run in C++: cannot set {attr_name!r} on them")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        if method_name == "render":
            return [self._raw[i] for i in self._get_indices(indices)]
        raise AttributeError(f"EnvPool envs run in C++: no method {method_name!r} to call")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for ``Monitor`` only: no Gymnasium wrapper is inside, but ``infos`` carry Monitor's episode records."""
        return [issubclass(wrapper_class, Monitor) for _ in self._get_indices(indices)]
