"""Crash-safe training checkpoints for ``train-agent --resume``.

Every ``save_freq`` agent steps :class:`ResumeCallback` writes, under
``RUN_DIR/checkpoints/``, the model zip (weights, optimiser, step counters), the replay
buffer of off-policy algorithms, the VecNormalize statistics (npz), and last
``state.json``, which names those files and holds the callbacks' state (evaluation
history, env frames, elapsed time). Every file is written atomically and ``state.json``
only ever names complete files, so a ``kill -9`` at any point leaves a loadable
checkpoint. The model zip and the replay buffer are SB3's pickles: checkpoints are for resuming your own
runs (trusted files only).
Checkpoints are written when a rollout starts, after the update on the rollout before, so a resumed run
makes every update an uninterrupted one makes.
Inside :func:`checkpoint_on_signal` the first SIGINT (Ctrl-C) or SIGTERM writes a checkpoint when the next
rollout starts and stops training there, so stopping a run loses nothing.
:class:`KeepBestCallback` keeps the best training evaluation's policy in ``RUN_DIR/best/`` the
same way.

>>> import tempfile, pathlib
>>> read_state(pathlib.Path(tempfile.mkdtemp())) is None
True
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from agents.bundle import (
    BEST_DIR,
    BEST_FILE,
    EVALUATIONS_FILE,
    MODEL_FILE,
    NORMALIZE_FILE,
    SUMMARY_FILE,
    BundleError,
    read_best,
    save_model,
    save_vec_normalize,
)
from agents.policy_file import save_policy
from agents.vec_env import find_vec_normalize
from worldmodel.common.atomic import atomic_path, write_json_atomic

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint's state of ``run_dir``, or None when it has none."""
    path = run_dir / CHECKPOINT_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(
            f"{path} is not readable JSON ({exc}); restore it from a copy, or delete {path.parent} to continue from "
            "the run's final bundle, if it finished"
        ) from exc
    if not isinstance(state, dict) or not isinstance(state.get("files"), dict) or "model" not in state["files"]:
        raise BundleError(f"{path} does not name the checkpoint's files (edited?); restore it from a copy")
    return state


def state_from_bundle(run_dir: Path, *, off_policy: bool) -> dict[str, Any] | None:
    """A resume state made from a finished run's bundle, for a run whose checkpoints were not kept.

    A finished run's ``model.zip``, ``vec_normalize.npz``, ``summary.json`` and
    ``evaluations.npz`` hold all that an on-policy algorithm needs to train further (e.g.
    a run copied back from another machine without ``checkpoints/``). None when the run
    never finished; an off-policy run raises, as its replay buffer is only in checkpoints.
    File names in the state are absolute.
    """
    summary_path, model = run_dir / SUMMARY_FILE, run_dir / MODEL_FILE
    if not (summary_path.is_file() and model.is_file()):
        return None
    if off_policy:
        raise ValueError(
            f"{run_dir} has no resume checkpoint ({CHECKPOINT_DIR}/{STATE_FILE}), and its bundle has no replay buffer: "
            "an off-policy run cannot continue faithfully; train a new run with another --out"
        )
    summary = json.loads(summary_path.read_text())
    files = {"model": str(model.resolve())}
    if (run_dir / NORMALIZE_FILE).is_file():
        files["vec_normalize"] = str((run_dir / NORMALIZE_FILE).resolve())
    history = None
    if (run_dir / EVALUATIONS_FILE).is_file():
        with np.load(run_dir / EVALUATIONS_FILE, allow_pickle=False) as data:
            means = data["results"].mean(axis=1) if len(data["timesteps"]) else np.zeros(0)
            history = {
                "timesteps": data["timesteps"].tolist(),
                "results": data["results"].tolist(),
                "lengths": data["ep_lengths"].tolist(),
                "best_mean_reward": float(means.max()) if len(means) else -np.inf,
                "last_mean_reward": float(means[-1]) if len(means) else -np.inf,
            }
    return {
        "step": summary["agent_steps"],
        "files": files,
        "env_frames": summary["env_frames"],
        "elapsed_s": summary["elapsed_s"],
        "curve": summary.get("curve", []),
        "eval": history,
    }


def eval_history(callback: EvalCallback) -> dict[str, Any]:
    """What EvalCallback accumulated, JSON-ready."""
    return {
        "timesteps": [int(t) for t in callback.evaluations_timesteps],
        "results": [[float(r) for r in row] for row in callback.evaluations_results],
        "lengths": [[int(n) for n in row] for row in callback.evaluations_length],
        "best_mean_reward": float(callback.best_mean_reward),
        "last_mean_reward": float(callback.last_mean_reward),
    }


def restore_eval_history(callback: EvalCallback, history: dict[str, Any], num_timesteps: int, n_envs: int) -> None:
    """Put a saved evaluation history back and align the call counter with the step counter."""
    callback.evaluations_timesteps = list(history["timesteps"])
    callback.evaluations_results = [list(row) for row in history["results"]]
    callback.evaluations_length = [list(row) for row in history["lengths"]]
    callback.best_mean_reward = history["best_mean_reward"]
    callback.last_mean_reward = history["last_mean_reward"]
    callback.n_calls = num_timesteps // n_envs


class ResumeCallback(BaseCallback):
    """Counts env frames and writes a resume checkpoint at the first rollout start past every ``save_freq`` steps
    (after the update on the rollout before: a checkpoint at a rollout's end would lose that update)."""

    def __init__(
        self,
        run_dir: Path,
        save_freq: int,
        eval_callback: EvalCallback | None,
        *,
        env_frames: int = 0,
        elapsed_s: float = 0.0,
        curve: list[dict[str, float]] | None = None,
    ) -> None:
        super().__init__()
        self.dir = run_dir / CHECKPOINT_DIR
        self.save_freq = max(1, int(save_freq))
        self.eval_callback = eval_callback
        self.env_frames = env_frames
        self.elapsed_before = elapsed_s
        self.curve = list(curve or [])
        """Per evaluation: agent step, env frames and training wall time (across resumes and machines)."""
        self._started = time.monotonic()
        self._next_save = 0
        self._evals_seen = 0
        self.stop_requested = False
        """Set to write a checkpoint when the next rollout starts and stop training there
        (:func:`checkpoint_on_signal`)."""
        self.stopped_at: int | None = None
        """The step of the checkpoint written on a stop request, once written."""

    def _on_training_start(self) -> None:
        self._started = time.monotonic()
        self._next_save = (self.num_timesteps // self.save_freq + 1) * self.save_freq
        self._evals_seen = len(self.eval_callback.evaluations_timesteps) if self.eval_callback else 0

    @property
    def elapsed_s(self) -> float:
        """Training wall time, including the runs before a resume."""
        return self.elapsed_before + time.monotonic() - self._started

    def _on_step(self) -> bool:
        self.env_frames += sum(int(info.get("frames", 1)) for info in self.locals.get("infos", []))
        if self.eval_callback is not None and len(self.eval_callback.evaluations_timesteps) > self._evals_seen:
            self._evals_seen = len(self.eval_callback.evaluations_timesteps)  # it evaluated at this step
            point = {"step": self.num_timesteps, "env_frames": self.env_frames, "elapsed_s": round(self.elapsed_s, 2)}
            self.curve.append(point)
        return self.stopped_at is None

    def _on_rollout_start(self) -> None:
        # The update on the previous rollout is done; off-policy algorithms have stored its last transition.
        if self.num_timesteps >= self._next_save or self.stop_requested:
            self.save()
            self._next_save = (self.num_timesteps // self.save_freq + 1) * self.save_freq
        if self.stop_requested:
            self.stopped_at = self.num_timesteps

    def save(self) -> None:
        """Write model, buffer and statistics for this step, then point ``state.json`` at them."""
        state = {
            "step": self.num_timesteps,
            "env_frames": self.env_frames,
            "elapsed_s": self.elapsed_s,
            "curve": self.curve,
            "eval": None if self.eval_callback is None else eval_history(self.eval_callback),
        }
        replay_buffer = isinstance(self.model, OffPolicyAlgorithm)
        save_snapshot(self.dir / STATE_FILE, self.model, self.training_env, state, replay_buffer=replay_buffer)


class TrainingStopped(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after writing a resume checkpoint (the message says how to continue)."""


@contextlib.contextmanager
def checkpoint_on_signal(callback: ResumeCallback) -> Iterator[None]:
    """While inside, the first SIGINT or SIGTERM sets ``callback.stop_requested``: training writes a resume
    checkpoint when the next rollout starts and stops there. A second signal acts as it did before (Ctrl-C raises
    KeyboardInterrupt at once). Outside the main thread, where Python takes no signals, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def request_stop(signum: int, _frame: Any) -> None:
        restore()
        callback.stop_requested = True
        print(f"{signal.Signals(signum).name}: writing a resume checkpoint after this rollout's update, then stopping "
              "(send it again to stop at once)", file=sys.stderr, flush=True)  # fmt: skip

    for sig in signals:
        signal.signal(sig, request_stop)
    try:
        yield
    finally:
        restore()


def save_snapshot(
    pointer: Path,
    model: BaseAlgorithm,
    env: VecEnv,
    record: dict[str, Any],
    *,
    replay_buffer: bool = False,
    policy_file: bool = False,
) -> None:
    """Write the model (and its replay buffer if asked) and ``env``'s VecNormalize statistics beside ``pointer``,
    named by step, then write ``pointer``: ``record`` plus the step and file names. Files of earlier snapshots
    in that directory are deleted afterwards, so a kill at any point leaves a complete snapshot.
    ``policy_file``: also the pickle-free policy files (:mod:`agents.policy_file`) that ``evaluate`` loads."""
    step = model.num_timesteps
    directory = pointer.parent
    directory.mkdir(parents=True, exist_ok=True)
    files = {"model": f"model_{step}.zip"}
    if policy_file:
        files |= {"policy": f"policy_{step}.json", "policy_weights": f"policy_{step}.safetensors"}
        save_policy(model, directory / files["policy"], directory / files["policy_weights"])
    save_model(model, directory / files["model"])
    if replay_buffer:
        files["replay_buffer"] = f"replay_buffer_{step}.pkl"
        with atomic_path(directory / files["replay_buffer"]) as tmp, open(tmp, "wb") as f:
            model.save_replay_buffer(f)
    normalizer = find_vec_normalize(env)
    if normalizer is not None:
        files["vec_normalize"] = f"vec_normalize_{step}.npz"
        save_vec_normalize(normalizer, directory / files["vec_normalize"])
    write_json_atomic(pointer, {**record, "step": step, "files": files})
    keep = set(files.values()) | {pointer.name}
    for path in directory.iterdir():
        if path.name not in keep and not path.name.startswith("."):
            path.unlink(missing_ok=True)


class KeepBestCallback(BaseCallback):
    """Keeps the policy of the best training evaluation in ``RUN_DIR/best/`` (``train-agent --keep-best``).

    After each evaluation of ``eval_callback`` whose mean return beats the one recorded in
    ``best/best.json`` (across resumes and continued runs), the policy files, the model and its
    VecNormalize statistics are written there as :func:`save_snapshot` does; ``best.json`` holds the
    step, the env frames and the evaluation's mean and std return. Place it after the
    ``EvalCallback`` and the :class:`ResumeCallback` (for the env frames) in the callback list.
    """

    def __init__(self, run_dir: Path, eval_callback: EvalCallback, resume_callback: ResumeCallback) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.pointer = run_dir / BEST_DIR / BEST_FILE
        self.eval_callback = eval_callback
        self.resume_callback = resume_callback
        self._evals_seen = 0
        self.best_mean_return = -np.inf

    def _on_training_start(self) -> None:
        self._evals_seen = len(self.eval_callback.evaluations_timesteps)
        best = read_best(self.run_dir)
        self.best_mean_return = -np.inf if best is None else float(best["mean_return"])

    def _on_step(self) -> bool:
        if len(self.eval_callback.evaluations_timesteps) == self._evals_seen:
            return True
        self._evals_seen = len(self.eval_callback.evaluations_timesteps)
        returns = np.asarray(self.eval_callback.evaluations_results[-1], dtype=float)
        if returns.mean() > self.best_mean_return:
            self.best_mean_return = float(returns.mean())
            record = {
                "env_frames": self.resume_callback.env_frames,
                "mean_return": self.best_mean_return,
                "std_return": float(returns.std()),
                "episodes": len(returns),
            }
            save_snapshot(self.pointer, self.model, self.training_env, record, policy_file=True)
        return True
