"""Crash-safe training checkpoints for ``train-agent --resume``.

Every ``save_freq`` agent steps :class:`ResumeCallback` writes, under
``RUN_DIR/checkpoints/``, the model zip (weights, optimiser, step counters), the replay
buffer of off-policy algorithms, the VecNormalize statistics (npz), and last
``state.json``, which names those files and holds the callbacks' state (evaluation
history, env frames, elapsed time). Every file is written atomically and ``state.json``
only ever names complete files, so a ``kill -9`` at any point leaves a loadable
checkpoint. The replay buffer is SB3's pickle: checkpoints are for resuming your own runs.

>>> import tempfile, pathlib
>>> read_state(pathlib.Path(tempfile.mkdtemp())) is None
True
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from agents.bundle import EVALUATIONS_FILE, MODEL_FILE, NORMALIZE_FILE, SUMMARY_FILE, save_model, save_vec_normalize
from agents.vec_env import find_vec_normalize
from worldmodel.atomic import atomic_path, write_json_atomic

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The latest checkpoint's state of ``run_dir``, or None when it has none."""
    path = run_dir / CHECKPOINT_DIR / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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
    """Counts env frames and writes a resume checkpoint at the first rollout end past every ``save_freq`` steps."""

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
        return True

    def _on_rollout_end(self) -> None:
        # At the end of a rollout, off-policy algorithms have stored the last transition.
        if self.num_timesteps >= self._next_save:
            self.save()
            self._next_save = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def save(self) -> None:
        """Write model, buffer and statistics for this step, then point ``state.json`` at them."""
        step = self.num_timesteps
        self.dir.mkdir(parents=True, exist_ok=True)
        files = {"model": f"model_{step}.zip"}
        save_model(self.model, self.dir / files["model"])
        if isinstance(self.model, OffPolicyAlgorithm):
            files["replay_buffer"] = f"replay_buffer_{step}.pkl"
            with atomic_path(self.dir / files["replay_buffer"]) as tmp, open(tmp, "wb") as f:
                self.model.save_replay_buffer(f)
        normalizer = find_vec_normalize(self.training_env)
        if normalizer is not None:
            files["vec_normalize"] = f"vec_normalize_{step}.npz"
            save_vec_normalize(normalizer, self.dir / files["vec_normalize"])
        state = {
            "step": step,
            "files": files,
            "env_frames": self.env_frames,
            "elapsed_s": self.elapsed_s,
            "curve": self.curve,
            "eval": None if self.eval_callback is None else eval_history(self.eval_callback),
        }
        write_json_atomic(self.dir / STATE_FILE, state)
        keep = set(files.values()) | {STATE_FILE}
        for path in self.dir.iterdir():
            if path.name not in keep and not path.name.startswith("."):
                path.unlink(missing_ok=True)
