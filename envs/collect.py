"""Rollout collection: ``worldmodel collect ENV_ID --out DATA_DIR --episodes N`` and :func:`collect_rollouts`.

Worker processes (one env each) run whole episodes: episode ``i`` resets the env and the
policy with seed ``seed + i``, so its content depends on nothing else -- not on the
worker that ran it nor on the order episodes finish. Workers preprocess frames with the
dataset's :class:`FrameSpec` and send finished episodes to the main process, which writes
them with :class:`~worldmodel.data.writer.DatasetWriter`. Running the same command again
collects only the episodes the dataset lacks, so an interrupted run (Ctrl-C, ``kill -9``)
resumes exactly. A worker that makes no step for ``step_timeout`` seconds, or dies, is
reported with the env id and episode, killed and replaced, and the episode restarts.

>>> config = CollectConfig("CarRacing-v3", out="data/car", episodes=8, size=(32, 32))
>>> config.env_config.skip_start_frames, config.env_config.frame_spec.shape
(50, (32, 32, 3))
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from envs.config import EnvConfig, env_preset
from envs.episode_claims import EpisodeClaims
from envs.factory import make_env, make_env_fn
from envs.policies import PolicyFactory, policy_factory
from envs.true_state import missing_state_note, state_names
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.common.errors import UserError
from worldmodel.common.plugins import POLICIES_GROUP, load_entry_points
from worldmodel.data import DatasetError, DatasetWriter, FrameDataset, set_aside_damaged_shards
from worldmodel.frames import FrameSpec

COMMAND_HELP = (
    "collect rollouts from any Gymnasium env (random, brownian or a trained agent) into a dataset (resumable)"
)
"""One line for ``worldmodel --help``."""

STARTUP_TIMEOUT_S = 60.0
"""The least time a worker gets to make its env before it counts as hung (imports and ROMs are slow when busy)."""


def default_n_envs() -> int:
    """The number of CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class CollectConfig:
    """What to collect and where; unset env options come from the env's preset (:func:`envs.config.env_preset`)."""

    env_id: str
    """Gymnasium id, e.g. CarRacing-v3, ALE/Pong-v5, Pendulum-v1, worldmodel/DotTarget-v0."""
    out: Path
    """Dataset directory (created; an existing one is resumed or extended)."""
    episodes: int = 100
    """Episodes the dataset should hold for this seed: indices 0..N-1, seeds seed..seed+N-1."""
    n_envs: int = field(default_factory=default_n_envs)
    """Worker processes, one env each."""
    policy: str = "random"
    """Action policy: random, brownian (correlated, World Models style; Box actions), or a train-agent RUN_DIR."""
    policy_noise: float = 0.0
    """With --policy RUN_DIR: std of Gaussian noise added to the agent's Box actions."""
    epsilon: float = 0.0
    """With --policy RUN_DIR: probability of a uniform-random action instead of the agent's."""
    max_steps: int | None = None
    """Cap on agent steps per episode, the last step marked truncated (default: the env's own limit)."""
    seed: int = 0
    """Episode i resets the env and the policy with seed + i."""
    size: tuple[int, int] | None = None
    """Stored frame size HEIGHT WIDTH (default: the preset's, 64 64)."""
    crop: tuple[int, int, int, int] | None = None
    """Crop box TOP LEFT BOTTOM RIGHT in source pixels before resizing (default: the preset's)."""
    grayscale: bool | None = None
    """Store one luminance channel (default: the preset's, RGB)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """JSON keyword arguments for gym.make, e.g. '{"continuous": false}'."""
    frame_skip: int | None = None
    """Repeat each action this many env frames (default: the preset's)."""
    skip_start_frames: int | None = None
    """No-op frames after each reset before recording (default: the preset's; 50 for CarRacing-v3)."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend: gymnasium, or envpool (CarRacing-v3 and Atari in C++, ~5x faster; pip extra envpool)."""
    step_timeout: float = 60.0
    """Seconds a worker may go without finishing a step before it counts as hung (making its env: at least 60 s)."""
    max_retries: int = 2
    """Times an episode is restarted on a new worker after a hang or crash before collection stops."""
    collector_id: str | None = None
    """Prefix of this collector's shard names (default: the host name); several collectors may share --out."""
    shard_mib: float = 64.0
    """Frames per shard file, in MiB."""
    flush_seconds: float = 120.0
    """Write buffered episodes at least this often (bounds the work a kill -9 loses)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.episodes < 0 or self.n_envs < 1:
            raise ValueError(f"need episodes >= 0 and n_envs >= 1, got {self.episodes} and {self.n_envs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")

    @property
    def env_config(self) -> EnvConfig:
        """The env preset with this config's overrides applied."""
        preset = env_preset(self.env_id)
        spec = preset.frame_spec
        height, width = self.size if self.size is not None else (spec.height, spec.width)
        frame_spec = FrameSpec(
            height=height,
            width=width,
            crop=self.crop if self.crop is not None else spec.crop,
            grayscale=self.grayscale if self.grayscale is not None else spec.grayscale,
            interpolation=spec.interpolation,
        )
        overrides = {"frame_skip": self.frame_skip, "skip_start_frames": self.skip_start_frames}
        return preset.replace(
            env_kwargs={**preset.env_kwargs, **self.env_kwargs},
            frame_spec=frame_spec,
            backend=self.backend,
            **{k: v for k, v in overrides.items() if v is not None},
        )


class CollectError(UserError, RuntimeError):
    """Collection stopped: a worker kept hanging or crashing, or could not make its env."""


@dataclass(frozen=True)
class CollectSummary:
    """What a :func:`collect_rollouts` call did and what the dataset now holds."""

    data_dir: Path
    new_episodes: int
    """Episodes collected by this call."""
    new_frames: int
    """Frames stored by this call."""
    env_frames: int
    """Base-env frames this call consumed (frame skip and skipped start frames included)."""
    seconds: float
    episodes: int
    """Episodes in the dataset."""
    frames: int
    """Frames in the dataset."""
    mean_return: float
    """Mean return of the dataset's episodes."""
    disk_bytes: int

    @property
    def frames_per_second(self) -> float:
        return self.new_frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_frame(self) -> float:
        return self.disk_bytes / self.frames if self.frames else 0.0

    def describe(self) -> str:
        return (
            f"{self.data_dir}: {self.episodes} episodes, {self.frames} frames, mean return {self.mean_return:.2f}, "
            f"{self.disk_bytes / 2**20:.1f} MiB on disk ({self.bytes_per_frame:.0f} bytes/frame); this run: "
            f"{self.new_episodes} episodes, {self.new_frames} frames ({self.env_frames} env frames) in "
            f"{self.seconds:.1f} s, {self.frames_per_second:.0f} frames/s"
        )


# ---------------------------------------------------------------------------------------------
# Workers


def run_episode(
    env: gym.Env, policy: Any, frame_spec: FrameSpec, seed: int, max_steps: int | None, heartbeat: Any = None
) -> dict[str, Any]:
    """Run one seeded episode; return its preprocessed frames, actions, rewards, flags, states, env frames."""
    obs, info = env.reset(seed=seed)
    policy.reset(seed)
    frames, states = [frame_spec.apply(obs)], [info.get("state")]
    actions, rewards, terminated, truncated = [], [], [], []
    env_frames = int(info.get("frames", 0))
    done = False
    while not done:
        action = policy(obs, info)
        obs, reward, term, trunc, info = env.step(action)
        if heartbeat is not None:
            heartbeat.value = time.monotonic()
        trunc = bool(trunc) or (max_steps is not None and len(rewards) + 1 >= max_steps)
        frames.append(frame_spec.apply(obs))
        states.append(info.get("state"))
        actions.append(action)
        rewards.append(float(reward))
        terminated.append(bool(term))
        truncated.append(trunc)
        env_frames += int(info.get("frames", 1))
        done = bool(term) or trunc
    has_states = all(s is not None for s in states)
    return {
        "frames": np.stack(frames),
        "actions": np.asarray(actions),
        "rewards": np.asarray(rewards, np.float32),
        "terminated": np.asarray(terminated),
        "truncated": np.asarray(truncated),
        "states": np.stack(states).astype(np.float32).reshape(len(states), -1) if has_states else None,
        "env_frames": env_frames,
    }


def _worker(conn: Connection, heartbeat: Any, config: EnvConfig, policy: PolicyFactory, max_steps: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops us
    try:
        env = make_env_fn(config)()
        agent = policy(env.action_space)
    except Exception:
        conn.send(("error", None, traceback.format_exc()))
        return
    conn.send(("ready", None, None))
    try:
        while (task := conn.recv()) is not None:
            episode_index, seed = task
            heartbeat.value = time.monotonic()
            try:
                result = run_episode(env, agent, config.frame_spec, seed, max_steps, heartbeat)
            except Exception:
                conn.send(("error", episode_index, traceback.format_exc()))
                return
            conn.send(("done", episode_index, result))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the main process went away


@dataclass
class _Slot:
    process: Any
    conn: Connection
    heartbeat: Any
    ready: bool = False
    task: tuple[int, int] | None = None


class EpisodePool:
    """Worker processes running whole seeded episodes, with hang and crash detection.

    :meth:`run` yields ``(episode_index, seed, episode)`` as episodes finish, in any order.
    """

    def __init__(
        self,
        env_config: EnvConfig,
        policy: PolicyFactory,
        *,
        n_workers: int,
        max_steps: int | None = None,
        step_timeout: float = 60.0,
        max_retries: int = 2,
        report: Any = None,
    ) -> None:
        self.env_config = env_config
        self.policy = policy
        self.n_workers = n_workers
        self.max_steps = max_steps
        self.step_timeout = step_timeout
        self.max_retries = max_retries
        self.report = report or (lambda message: print(message, file=sys.stderr, flush=True))
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["envs.collect"])  # workers fork with gymnasium, cv2, numpy loaded
        self._slots: list[_Slot] = []

    def _start(self) -> _Slot:
        parent, child = self._ctx.Pipe()
        heartbeat = self._ctx.RawValue("d", time.monotonic())
        process = self._ctx.Process(
            target=_worker,
            args=(child, heartbeat, self.env_config, self.policy, self.max_steps),
            daemon=True,
            name="worldmodel-collect",
        )
        process.start()
        child.close()
        return _Slot(process, parent, heartbeat)

    def _stop(self, slot: _Slot, *, graceful: bool = False) -> None:
        if graceful and slot.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                slot.conn.send(None)
            slot.process.join(timeout=2)
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(timeout=5)
        slot.conn.close()

    def _fail(
        self, slot: _Slot, problem: str, pending: deque[tuple[int, int]], attempts: dict[int, int], detail: str = ""
    ) -> None:
        """Report a worker's failure, replace it and requeue (or give up on) its episode."""
        self._stop(slot)
        self._slots[self._slots.index(slot)] = self._start()
        where = f"{self.env_config.env_id} " + (
            "while making its env" if slot.task is None else f"episode {slot.task[0]} (seed {slot.task[1]})"
        )
        key = -1 if slot.task is None else slot.task[0]
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] > self.max_retries:
            raise CollectError(
                f"worker pid {slot.process.pid} {problem} on {where}, {attempts[key]} times; giving up. "
                "Check the env (or raise --step-timeout if its steps are legitimately slow)." + detail
            )
        self.report(
            f"worker pid {slot.process.pid} {problem} on {where}; replaced it and restarting "
            f"(attempt {attempts[key] + 1} of {self.max_retries + 1})"
        )
        if slot.task is not None:
            pending.appendleft(slot.task)

    def run(
        self, tasks: list[tuple[int, int]], claim: Callable[[tuple[int, int]], bool] | None = None
    ) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Run ``(episode_index, seed)`` tasks; yields each finished episode.

        ``claim(task)``, asked just before a task goes to a worker, may skip it (another collector has it).
        """
        pending = deque(tasks)
        attempts: dict[int, int] = {}
        self._slots = [self._start() for _ in range(min(self.n_workers, len(tasks)))]
        try:
            while pending or any(s.task is not None for s in self._slots):
                for slot in self._slots:
                    while slot.ready and slot.task is None and pending:
                        task = pending.popleft()
                        if claim is not None and not claim(task):
                            continue
                        slot.task = task
                        slot.heartbeat.value = time.monotonic()
                        slot.conn.send(task)
                for conn in wait([s.conn for s in self._slots], timeout=0.2):
                    slot = next(s for s in self._slots if s.conn is conn)
                    try:
                        kind, episode_index, payload = conn.recv()
                    except (EOFError, OSError):
                        slot.process.join(timeout=2)  # to learn its exit code
                        self._fail(slot, f"died (exit code {slot.process.exitcode})", pending, attempts)
                        continue
                    if kind == "ready":
                        slot.ready = True
                    elif kind == "done":
                        task, slot.task = slot.task, None
                        assert task is not None and task[0] == episode_index
                        yield episode_index, task[1], payload
                    elif episode_index is None:  # making the env failed: no retry helps
                        raise CollectError(f"cannot make {self.env_config.env_id} in a worker:\n{payload}")
                    else:
                        last = payload.strip().splitlines()[-1]
                        self._fail(slot, f"raised {last}", pending, attempts, detail=f"\nLast traceback:\n{payload}")
                now = time.monotonic()
                for slot in list(self._slots):
                    if not slot.process.is_alive() and not slot.conn.poll():
                        self._fail(slot, f"died (exit code {slot.process.exitcode})", pending, attempts)
                    elif slot.task is not None or not slot.ready:
                        # making the env (imports, ROMs) may legitimately take longer than a step on a busy machine
                        limit = self.step_timeout if slot.ready else max(self.step_timeout, STARTUP_TIMEOUT_S)
                        if now - slot.heartbeat.value > limit:
                            self._fail(slot, f"made no progress for {limit:g} s (hung)", pending, attempts)
        finally:
            self.close()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        for slot in self._slots:
            self._stop(slot, graceful=slot.task is None)
        self._slots = []


# ---------------------------------------------------------------------------------------------
# Collection


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def collect_rollouts(config: CollectConfig, policy: PolicyFactory | None = None) -> CollectSummary:
    """Collect the episodes ``config.out`` lacks for ``config`` (see the module docstring).

    ``policy`` builds each worker's policy from the action space (picklable); default:
    the built-in policy named by ``config.policy``.
    """
    env_config = config.env_config
    factory = policy if policy is not None else policy_factory(config.policy)
    probe = make_env(env_config)  # fail early and clearly: unknown id, no pixels, bad crop, bad policy
    try:
        env_config.frame_spec.check_source(probe.observation_space.shape)
        factory(probe.action_space)
    finally:
        probe.close()
    attrs = {"collect": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}}
    if policy is not None:  # record what actually chose the actions
        attrs["collect"]["policy"] = getattr(policy, "__qualname__", repr(policy))
    attrs["env"] = env_config.to_dict()
    names = state_names(env_config)
    if names is not None:  # what each column of the dataset's states is
        attrs["state_names"] = list(names)
    if (note := missing_state_note(env_config)) is not None:
        print(f"worldmodel collect: {note}", file=sys.stderr)
    start = time.monotonic()
    new_episodes = new_frames = env_frames = 0
    DatasetWriter.check(Path(config.out), config.env_id, env_config.frame_spec, config.collector_id)
    with EpisodeClaims(config.out) as claims:
        if claims.others_running():
            print(f"{config.out}: another collector is writing here; damaged shards, if any, are left for later")
        else:
            for line in set_aside_damaged_shards(config.out):
                print(line, file=sys.stderr)
        with DatasetWriter(
            config.out,
            env_id=config.env_id,
            frame_spec=env_config.frame_spec,
            collector_id=config.collector_id,
            shard_mib=config.shard_mib,
            attrs=attrs,
        ) as writer:

            def claim(task: tuple[int, int]) -> bool:
                """Claim the episode, then make sure no collector wrote it since this one started."""
                if not claims.claim(task[0]):
                    return False
                if task in writer.existing_episodes():
                    claims.release(task[0])
                    return False
                return True

            def flush() -> None:
                writer.flush()
                for index in unflushed:
                    claims.release(index)
                unflushed.clear()

            unflushed: list[int] = []
            existing = writer.existing_episodes()
            tasks = [(i, config.seed + i) for i in range(config.episodes) if (i, config.seed + i) not in existing]
            progress = _progress(config, done=config.episodes - len(tasks))
            pool = EpisodePool(
                env_config,
                factory,
                n_workers=config.n_envs,
                max_steps=config.max_steps,
                step_timeout=config.step_timeout,
                max_retries=config.max_retries,
                report=progress.write if progress is not None else None,
            )
            last_flush = time.monotonic()
            try:
                for episode_index, seed, ep in pool.run(tasks, claim):
                    writer.add_episode(
                        ep["frames"], ep["actions"], ep["rewards"], ep["terminated"], ep["truncated"],
                        seed=seed, episode_index=episode_index, states=ep["states"],
                    )  # fmt: skip
                    unflushed.append(episode_index)
                    new_episodes += 1
                    new_frames += len(ep["frames"])
                    env_frames += ep["env_frames"]
                    if time.monotonic() - last_flush > config.flush_seconds:
                        flush()
                        last_flush = time.monotonic()
                    if progress is not None:
                        progress.update(1)
                        fps = new_frames / max(time.monotonic() - start, 1e-9)
                        progress.set_postfix(frames=new_frames, fps=f"{fps:.0f}", refresh=False)
                flush()
            finally:
                pool.close()
                if progress is not None:
                    progress.close()
    seconds = time.monotonic() - start
    try:
        ds = FrameDataset.open(config.out, verify="none")
        episodes, frames, mean_return = ds.num_episodes, ds.num_frames, float(ds.episode_return.mean())
    except DatasetError:  # nothing collected at all (episodes=0)
        episodes, frames, mean_return = 0, 0, float("nan")
    return CollectSummary(
        data_dir=config.out,
        new_episodes=new_episodes,
        new_frames=new_frames,
        env_frames=env_frames,
        seconds=seconds,
        episodes=episodes,
        frames=frames,
        mean_return=mean_return,
        disk_bytes=_disk_bytes(config.out),
    )


def _progress(config: CollectConfig, done: int) -> Any:
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=config.episodes, initial=done, unit="ep", desc=f"collect {config.env_id}", dynamic_ncols=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel collect``."""
    add_config_arguments(parser, CollectConfig, positional=("env_id",))


ENV_SETTINGS = ("env_kwargs", "frame_skip", "skip_start_frames")
"""The :class:`CollectConfig` fields a policy factory's ``env_settings`` may fill in."""


def with_env_settings(config: CollectConfig, settings: dict[str, Any]) -> CollectConfig:
    """``config`` with a policy's env ``settings`` (fields of :data:`ENV_SETTINGS`) where the user left them unset.

    A trained agent acts on the env it was trained on: its factory carries ``env_settings``, so that
    ``collect --policy RUN_DIR`` needs no repeat of the agent's frame skip, start frames or keywords.

    >>> config = CollectConfig("CarRacing-v3", out="data", skip_start_frames=0)
    >>> filled = with_env_settings(config, {"frame_skip": 2, "skip_start_frames": 50, "env_kwargs": {}})
    >>> filled.frame_skip, filled.skip_start_frames
    (2, 0)
    """
    unknown = set(settings) - set(ENV_SETTINGS)
    if unknown:
        raise ValueError(f"a policy's env_settings may set {', '.join(ENV_SETTINGS)}, not {', '.join(sorted(unknown))}")
    unset = {key: value for key, value in settings.items() if getattr(config, key) in (None, {})}
    return dataclasses.replace(config, **unset)


def installed_policy(config: CollectConfig) -> PolicyFactory | None:
    """The policy an installed provider (entry-point group ``worldmodel.policies``) makes for ``config.policy``.

    A provider is ``function(config) -> PolicyFactory | None``: None when ``config.policy`` is not
    its kind (``agents`` provides trained-agent run directories). None from all of them: a
    built-in policy name, which :func:`collect_rollouts` resolves. A factory may carry
    ``env_settings`` (see :func:`with_env_settings`).
    """
    for provider in load_entry_points(POLICIES_GROUP).values():
        policy = provider(config)
        if policy is not None:
            return policy
    return None


def run(args: argparse.Namespace) -> int:
    """``worldmodel collect ENV_ID --out DATA_DIR ...``: collect, then print a summary."""
    config = config_from_args(CollectConfig, args)
    policy = installed_policy(config)
    config = with_env_settings(config, getattr(policy, "env_settings", {}))
    try:
        summary = collect_rollouts(config, policy)
    except KeyboardInterrupt:
        print("worldmodel collect: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(summary.describe())
    return 0
