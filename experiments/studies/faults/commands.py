"""The commands of the fault campaign on the toy env with tiny budgets: their command lines, what each leaves in
its case folder, how that is checked against the uninterrupted reference run (:class:`Check`), and the
:class:`Workspace` holding the inputs and references.

>>> sorted(COMMANDS) == sorted(["collect", "train-vae", "train-memory", "train-agent-ppo", "train-agent-tqc",
...                             "evaluate", "tune"])
True
>>> _without_timings({"epoch": 1, "wall_s": 3.2, "curve": [{"step": 8, "elapsed_s": 1.0}]})
{'epoch': 1, 'curve': [{'step': 8}]}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from experiments.studies.faults.running import KillPlan, Outcome, Runner, run_in_process, run_subprocess

TOY = "worldmodel/DotTarget-v0"
TOY_CONTINUOUS = "worldmodel/DotTargetContinuous-v0"
TIMING_KEYS = re.compile(r"wall_s|elapsed_s|per_s|wait|_s_this_session|datetime|duration")
"""Record keys that hold timings: left out when a run is compared with its reference."""


@dataclass(frozen=True)
class Budget:
    """The tiny runs of the campaign (:data:`FAST`: the default test suite's)."""

    collect_episodes: int = 300
    """Episodes of the collect cases: a toy episode takes milliseconds, and a small collection is mostly its
    workers' start, where a kill finds nothing to lose."""
    episodes: int = 16
    """Episodes of the dataset the trainers read."""
    max_steps: int = 40
    shard_mib: float = 0.2
    """Collection shards of about 2 episodes each: a kill finds many committed, some in flight."""
    vae_epochs: int = 4
    memory_epochs: int = 10
    """Memory epochs are short (16 episodes): many of them, so that kills land between them too."""
    ppo_steps: int = 1024
    ppo_eval_freq: int = 256
    tqc_steps: int = 512
    tqc_eval_freq: int = 128
    checkpoint_freq: int = 128
    eval_episodes: int = 8
    tune_trials: int = 3


FAST = Budget(
    collect_episodes=40, episodes=6, max_steps=30, shard_mib=0.1, vae_epochs=2, memory_epochs=2, ppo_steps=256,
    ppo_eval_freq=128, tqc_steps=192, tqc_eval_freq=96, checkpoint_freq=64, eval_episodes=4, tune_trials=2,
)  # fmt: skip
"""Budgets of the default test suite's cases."""

HYPERPARAMS = {
    # 256-unit layers: the model zip of a checkpoint outgrows the VAE copy, so the disk-full case fails mid-run
    "ppo.yml": {
        "default": {
            "n_envs": 2,
            "n_steps": 64,
            "batch_size": 64,
            "n_epochs": 1,
            "policy_kwargs": "dict(net_arch=[256, 256])",
        }
    },
    # a 20,000-transition buffer: its pickle in each checkpoint is the run's largest file
    "tqc.yml": {"default": {"n_envs": 1, "learning_starts": 64, "batch_size": 32, "buffer_size": 20_000}},
    "tune.yml": {"default": {"n_envs": 1, "n_steps": 32, "batch_size": 32, "n_epochs": 1}},
}
"""Recipes of the agent runs, written to ``OUT/inputs/``."""


class Progress(NamedTuple):
    """What a run stopped by a fault had committed."""

    text: str
    state: str
    """``none`` (a run after it starts afresh), ``partial`` (it continues from there) or ``finished``."""


@dataclass
class Check:
    """A finished case's output against the reference's."""

    finished: bool
    """The run got to its target (steps, episodes, trials)."""
    lost: int = 0
    """Units of the reference's output missing: episodes, epochs, evaluations, optimiser updates, trials."""
    duplicated: int = 0
    """Units present more than once."""
    matches: bool | None = None
    """The output equals the reference's (timings aside); None where not compared."""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    """One long command: how to run it into a case folder, what it leaves there, and how to check it."""

    name: str
    argv: Callable[[Workspace, str], list[str]]
    """The command line writing into the case folder (paths relative to the workspace)."""
    result: str
    """What it writes in the case folder: a folder or a file."""
    check: Callable[[Path, Path], Check]
    """``check(result, reference result)``."""
    progress: Callable[[Path], Progress]
    """What a killed run had done: ``progress(result)``."""
    needs: tuple[str, ...] = ()
    """Commands whose references are its inputs."""
    resume: bool = False
    """Runs again with ``--resume`` after a fault."""
    started: str | None = None
    """The first thing it writes, when not ``result``."""

    @property
    def first_file(self) -> str:
        """What it writes first (in the case folder): kills are timed from its appearance, so that they land in
        the command's work rather than in its imports."""
        return self.started or self.result


def collect_line(ws: Workspace, out: str, episodes: int) -> list[str]:
    """``worldmodel collect`` of ``episodes`` toy episodes (32x32 frames) into ``out``."""
    b = ws.budget
    return ["collect", TOY, "--out", out, "--episodes", str(episodes), "--max-steps", str(b.max_steps),
            "--n-envs", "2", "--seed", "0", "--size", "32", "32", "--shard-mib", str(b.shard_mib),
            "--collector-id", "faults", "--no-progress"]  # fmt: skip


def collect_argv(ws: Workspace, case: str) -> list[str]:
    return collect_line(ws, f"{case}/data", ws.budget.collect_episodes)


def vae_argv(ws: Workspace, case: str) -> list[str]:
    return ["train-vae", ws.dataset(), "--out", f"{case}/run", "--epochs", str(ws.budget.vae_epochs),
            "--batch-size", "32", "--latent-dim", "4", "--width-multiplier", "0.25", "--device", "cpu",
            "--precision", "fp32", "--threads", "1", "--patience", "0", "--no-figures", "--no-tensorboard",
            "--no-progress"]  # fmt: skip


def memory_argv(ws: Workspace, case: str) -> list[str]:
    return ["train-memory", ws.dataset(), "--vae", ws.vae(), "--out", f"{case}/run", "--hidden", "16",
            "--epochs", str(ws.budget.memory_epochs), "--batch-size", "4", "--seq-len", "16", "--device", "cpu",
            "--threads", "1", "--patience", "0", "--no-tensorboard", "--no-progress"]  # fmt: skip


def agent_argv(algo: str) -> Callable[[Workspace, str], list[str]]:
    def argv(ws: Workspace, case: str) -> list[str]:
        b = ws.budget
        steps, eval_freq = (b.ppo_steps, b.ppo_eval_freq) if algo == "ppo" else (b.tqc_steps, b.tqc_eval_freq)
        env_id = TOY if algo == "ppo" else TOY_CONTINUOUS
        extra = ["--no-compile-loss"] if algo == "tqc" else []  # compiling costs more than these runs
        return ["train-agent", env_id, "--vae", ws.vae(), "--algo", algo, "--timesteps", str(steps),
                "--hyperparams", ws.inputs(f"{algo}.yml"), "--eval-freq", str(eval_freq), "--eval-episodes", "2",
                "--checkpoint-freq", str(b.checkpoint_freq), "--device", "cpu", "--torch-threads", "1",
                "--no-progress-bar", "--no-tensorboard", "--out", f"{case}/run", *extra]  # fmt: skip

    return argv


def evaluate_argv(ws: Workspace, case: str) -> list[str]:
    return ["evaluate", ws.result("train-agent-ppo"), "--episodes", str(ws.budget.eval_episodes),
            "--out", f"{case}/evaluation.json", "--device", "cpu"]  # fmt: skip


def tune_argv(ws: Workspace, case: str) -> list[str]:
    return ["tune", TOY_CONTINUOUS, "--vae", ws.vae(), "--algo", "ppo", "--out", f"{case}/study",
            "--n-trials", str(ws.budget.tune_trials), "--budget-frames", "128", "--n-evaluations", "1",
            "--eval-episodes", "1", "--hyperparams", ws.inputs("tune.yml"), "--device", "cpu",
            "--torch-threads", "1"]  # fmt: skip


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _without_timings(record: Any) -> Any:
    if isinstance(record, dict):
        return {k: _without_timings(v) for k, v in record.items() if not TIMING_KEYS.search(k)}
    if isinstance(record, list):
        return [_without_timings(v) for v in record]
    return record


def _same_tensors(a: Path, b: Path) -> bool:
    from safetensors.numpy import load_file

    if not (a.is_file() and b.is_file()):
        return False
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


def _count_units(found: list[Any], expected: list[Any]) -> tuple[int, int]:
    """``(lost, duplicated)``: expected units missing from ``found``, and units ``found`` holds more than once."""
    return len(set(expected) - set(found)), len(found) - len(set(found))


# collect --------------------------------------------------------------------------------------


def _episode_ids(data: Path) -> list[tuple[int, int]]:
    """``(episode index, seed)`` of every episode the collectors' manifests list."""
    from worldmodel.data.manifest import merged_manifest

    shards = merged_manifest(data)["shards"]
    return [
        (i, s) for sh in shards for i, s in zip(sh["episodes"]["episode_index"], sh["episodes"]["seed"], strict=True)
    ]


def _episode_digests(data: Path) -> dict[int, str]:
    """SHA-256 of each episode's frames, actions, rewards, flags, states and seed, by episode index."""
    from worldmodel.data import FrameDataset

    ds = FrameDataset.open(data, verify="full")
    digests = {}
    for row in range(ds.num_episodes):
        ep = ds.episode(row)
        digest = hashlib.sha256(str(ep.seed).encode())
        for array in (ep.frames, ep.actions, ep.rewards, ep.terminated, ep.truncated, ep.states):
            digest.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
        digests[ep.episode_index] = digest.hexdigest()
    return digests


def check_collect(data: Path, reference: Path) -> Check:
    """Every episode of the reference, once, with the same contents (episodes depend on their seed alone)."""
    expected = _episode_ids(reference)
    if not (data / "manifest.json").is_file():
        return Check(False, lost=len(expected))
    found = _episode_ids(data)
    lost, duplicated = _count_units(found, expected)
    matches = _episode_digests(data) == _episode_digests(reference)
    return Check(set(found) == set(expected), lost, duplicated, matches,
                 {"episodes": len(found), "reference_episodes": len(expected)})  # fmt: skip


def collect_progress(data: Path) -> Progress:
    try:
        episodes = len(set(_episode_ids(data)))
    except Exception:  # no folder or no manifest yet
        return Progress("no episode committed", "none")
    return Progress(f"{episodes} episode(s) committed", "partial" if episodes else "none")


# train-vae, train-memory ----------------------------------------------------------------------


def _metrics(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def check_trainer(run: Path, reference: Path) -> Check:
    """The reference's steps and epochs, one metrics record per epoch, and (deterministic resume) the same
    checkpoints and metrics."""
    expected = [r["epoch"] for r in _metrics(reference)]
    if not (run / "summary.json").is_file():
        return Check(False, lost=len(set(expected) - {r["epoch"] for r in _metrics(run)}))
    summary, ref = read_json(run / "summary.json"), read_json(reference / "summary.json")
    records = _metrics(run)
    lost, duplicated = _count_units([r["epoch"] for r in records], expected)
    matches = all(
        _same_tensors(run / name, reference / name) for name in ("best.safetensors", "last.safetensors")
    ) and _without_timings(records) == _without_timings(_metrics(reference))
    finished = (summary["steps"], summary["epochs"]) == (ref["steps"], ref["epochs"])
    return Check(finished, lost, duplicated, matches, {"steps": summary["steps"], "reference_steps": ref["steps"]})


def trainer_progress(run: Path) -> Progress:
    if (run / "summary.json").is_file():
        return Progress("finished", "finished")
    files = [name for name in ("last.safetensors", "resume.safetensors") if (run / name).is_file()]
    text = f"{len(_metrics(run))} epoch(s) logged" + (f", {' and '.join(files)} written" if files else "")
    return Progress(text, "partial" if "resume.safetensors" in files else "none")


# train-agent ----------------------------------------------------------------------------------


def _evaluations(run: Path) -> tuple[list[int], list[list[float]]]:
    path = run / "evaluations.npz"
    if not path.is_file():
        return [], []
    with np.load(path) as data:
        return data["timesteps"].tolist(), data["results"].tolist()


def _updates(run: Path) -> int:
    """The optimiser updates SB3 made in a run (``_n_updates`` of its model zip: PPO epochs, TQC gradient steps)."""
    with zipfile.ZipFile(run / "model.zip") as archive:
        return int(json.loads(archive.read("data"))["_n_updates"])


def check_agent(run: Path, reference: Path) -> Check:
    """The reference's agent steps and optimiser updates, each training evaluation once, the replay buffer restored
    whole, and (deterministic resume) the same policy weights and evaluation returns. Lost counts evaluations,
    transitions of the replay buffer and updates."""
    expected, ref_results = _evaluations(reference)
    found, results = _evaluations(run)
    lost, duplicated = _count_units(found, expected)
    if not (run / "summary.json").is_file():
        return Check(False, lost, duplicated)
    summary, ref = read_json(run / "summary.json"), read_json(reference / "summary.json")
    detail = {k: summary.get(k) for k in ("agent_steps", "resumed_from_step", "replay_buffer_restored")}
    detail |= {
        "reference_agent_steps": ref["agent_steps"],
        "updates": _updates(run),
        "reference_updates": _updates(reference),
    }
    lost += max(0, detail["reference_updates"] - detail["updates"])
    duplicated += max(0, detail["updates"] - detail["reference_updates"])
    if summary.get("replay_buffer_restored") is not None and summary["resumed_from_step"]:
        lost += max(0, summary["resumed_from_step"] - summary["replay_buffer_restored"])  # transitions not restored
    curve = [point["step"] for point in summary.get("curve", [])]
    duplicated += len(curve) - len(set(curve))
    matches = _same_tensors(run / "policy.safetensors", reference / "policy.safetensors") and results == ref_results
    return Check(summary["agent_steps"] == ref["agent_steps"], lost, duplicated, matches, detail)


def agent_progress(run: Path) -> Progress:
    if (run / "summary.json").is_file():
        return Progress("finished", "finished")
    state = run / "checkpoints" / "state.json"
    if not state.is_file():
        return Progress("no checkpoint" + ("" if (run / "config.json").is_file() else ", no config.json"), "none")
    return Progress(f"checkpoint at step {read_json(state)['step']}", "partial")


# evaluate -------------------------------------------------------------------------------------


def check_evaluate(result: Path, reference: Path) -> Check:
    """Exactly the reference's number of episodes, with the same returns and lengths (the same tracks)."""
    ref = read_json(reference)
    if not result.is_file():
        return Check(False, lost=len(ref["returns"]))
    data = read_json(result)
    n, expected = len(data["returns"]), ref["episodes"]
    matches = (data["returns"], data["lengths"]) == (ref["returns"], ref["lengths"])
    return Check(n == expected, max(0, expected - n), max(0, n - expected), matches, {"episodes": n})


def evaluate_progress(result: Path) -> Progress:
    if result.is_file():
        return Progress("finished", "finished")
    progress = result.with_name(result.stem + ".progress.json")
    if not progress.is_file():
        return Progress("no progress file", "none")
    episodes = sum(len(done) for done in read_json(progress)["log"]["finished"])
    return Progress(f"{episodes} episode(s) in the progress file", "partial" if episodes else "none")


# tune -----------------------------------------------------------------------------------------


def _trials(study: Path) -> list[dict[str, Any]]:
    """Number, state, parameters and whether it is the preset's, of each trial in ``study/study.db``."""
    db = study / "study.db"
    if not db.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        params = con.execute("SELECT trial_id, param_name, param_value FROM trial_params").fetchall()
        attrs = con.execute("SELECT trial_id, key FROM trial_user_attributes WHERE key = 'from_preset'").fetchall()
    preset = {trial_id for trial_id, _ in attrs}
    by_trial: dict[int, dict[str, float]] = {}
    for trial_id, name, value in params:
        by_trial.setdefault(trial_id, {})[name] = value
    return [{"number": number, "state": state, "params": by_trial.get(trial_id, {}), "preset": trial_id in preset}
            for trial_id, number, state in rows]  # fmt: skip


def check_tune(study: Path, reference: Path) -> Check:
    """As many complete or pruned trials as the reference, the preset's trial among them, ``best.yaml`` written;
    the same trials (parameters) where resuming is deterministic."""
    done = ("COMPLETE", "PRUNED")
    ref = [t for t in _trials(reference) if t["state"] in done]
    trials = _trials(study)
    ended = [t for t in trials if t["state"] in done]
    lost, duplicated = max(0, len(ref) - len(ended)), max(0, len(ended) - len(ref))
    preset_lost = any(t["preset"] for t in ref) and not any(t["preset"] for t in ended)
    states: dict[str, int] = {}
    for t in trials:
        states[t["state"]] = states.get(t["state"], 0) + 1
    matches = [t["params"] for t in ended] == [t["params"] for t in ref]
    finished = len(ended) >= len(ref) and (study / "best.yaml").is_file() == (reference / "best.yaml").is_file()
    return Check(finished, lost + int(preset_lost), duplicated, matches,
                 {"trials_by_state": states, "preset_trial_lost": preset_lost})  # fmt: skip


def tune_progress(study: Path) -> Progress:
    try:
        states = [t["state"] for t in _trials(study)]
    except sqlite3.Error as exc:  # killed while making its tables, or a killed writer's journal to roll back
        return Progress(f"study.db not readable now ({exc})", "none" if "no such table" in str(exc) else "partial")
    if (study / "best.yaml").is_file() and "RUNNING" not in states:
        return Progress("finished", "finished")
    text = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states))) or "no trial"
    return Progress(f"trials: {text}", "partial" if states else "none")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("collect", collect_argv, "data", check_collect, collect_progress),
        Command("train-vae", vae_argv, "run", check_trainer, trainer_progress, resume=True),
        Command(
            "train-memory",
            memory_argv,
            "run",
            check_trainer,
            trainer_progress,
            needs=("train-vae",),
            resume=True,
        ),
        Command(
            "train-agent-ppo", agent_argv("ppo"), "run", check_agent, agent_progress, needs=("train-vae",), resume=True
        ),
        Command(
            "train-agent-tqc", agent_argv("tqc"), "run", check_agent, agent_progress, needs=("train-vae",), resume=True
        ),
        Command(
            "evaluate",
            evaluate_argv,
            "evaluation.json",
            check_evaluate,
            evaluate_progress,
            needs=("train-agent-ppo",),
            started="evaluation.progress.json",
        ),
        Command("tune", tune_argv, "study", check_tune, tune_progress, needs=("train-vae",)),
    )
}
"""Every command of the campaign, in the order their references are made (each one's inputs come first)."""


class Workspace:
    """The campaign's folder: ``inputs/``, each command's reference in ``<command>/reference/`` and one folder per
    case. ``runner`` makes the runs after a fault and the runs reading a damaged file, ``reference_runner`` (default:
    ``runner``) the references, on first use, their inputs first; killed and disk-full runs always have processes
    of their own. The campaign times its references in processes of their own, as the runs it kills."""

    def __init__(
        self, root: str | Path, budget: Budget | None = None, runner: Runner = run_in_process,
        reference_runner: Runner | None = None,
    ) -> None:  # fmt: skip
        self.root = Path(root).resolve()
        self.budget = budget or Budget()
        self.runner = runner
        self.reference_runner = reference_runner or runner
        self.references: dict[str, Outcome] = {}
        self.working_s: dict[str, float] = {}
        """Per reference, the seconds from its first file to its last write: where kill moments are drawn."""
        self._progress_sample: Path | None = None
        self.root.mkdir(parents=True, exist_ok=True)

    def inputs(self, name: str) -> str:
        """The recipe ``name`` of :data:`HYPERPARAMS`, written to ``inputs/`` (a path relative to the root)."""
        import yaml

        path = self.root / "inputs" / name
        if not path.is_file():
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(HYPERPARAMS[name]))
        return f"inputs/{name}"

    def fresh(self, case: str) -> str:
        """An empty case folder ``case`` (relative to the root)."""
        shutil.rmtree(self.root / case, ignore_errors=True)
        (self.root / case).mkdir(parents=True)
        return case

    def reference(self, name: str) -> Outcome:
        """The uninterrupted run of command ``name`` (made now if not yet), which must succeed."""
        if name not in self.references:
            command = COMMANDS[name]
            for need in command.needs:
                self.reference(need)
            case = self.fresh(f"{name}/reference")
            outcome = self.reference_runner(command.argv(self, case), self.root, watch=f"{case}/{command.first_file}")
            if outcome.returncode != 0:
                raise RuntimeError(f"the reference run of {name} failed (exit {outcome.returncode}):\n{outcome.stderr}")
            result = self.root / case / command.result
            files = [result] if result.is_file() else [p for p in result.rglob("*") if p.is_file()]
            last_write = max(p.stat().st_mtime for p in files) - outcome.began
            self.working_s[name] = max(0.0, last_write - (outcome.started_s or 0.0))
            self.references[name] = outcome
        return self.references[name]

    def result(self, name: str) -> str:
        """What the reference of command ``name`` wrote (relative to the root); made first if need be."""
        self.reference(name)
        return f"{name}/reference/{COMMANDS[name].result}"

    def dataset(self) -> str:
        """The dataset the trainers read, ``inputs/data`` (collected once, by ``runner``)."""
        path = "inputs/data"
        if not (self.root / path / "manifest.json").is_file():
            shutil.rmtree(self.root / path, ignore_errors=True)
            outcome = self.runner(collect_line(self, path, self.budget.episodes), self.root)
            if outcome.returncode != 0:
                raise RuntimeError(
                    f"collecting the trainers' dataset failed (exit {outcome.returncode}):\n{outcome.stderr}"
                )
        return path

    def vae(self) -> str:
        return self.result("train-vae") + "/best.safetensors"

    def memory(self) -> str:
        return self.result("train-memory") + "/best.safetensors"

    def progress_sample(self) -> Path:
        """A real evaluation progress file: ``evaluate`` killed as soon as it wrote one (made once)."""
        if self._progress_sample is None:
            case = self.fresh("evaluate/progress-sample")
            argv = evaluate_argv(self, case)
            progress = f"{case}/evaluation.progress.json"
            run_subprocess(argv, self.root, kill=KillPlan(0.0, after=progress))
            if not (self.root / progress).is_file():
                raise RuntimeError("evaluate ended before it wrote a progress file: raise the budget's eval_episodes")
            self._progress_sample = self.root / progress
        return self._progress_sample
