"""The CarRacing-v3 recipe screening of issue 18: one factor at a time from the fast latent recipe.

Every arm trains on EnvPool for the same number of env frames (agent steps = frames / frame
skip) over the shipped VAE, then is scored on the same EnvPool tracks twice: with the policy's
deterministic action and with sampled actions. Screening scores use EnvPool (its fidelity
report shows no measurable gap to Gymnasium); final claims are always scored on Gymnasium.
Each stage is skipped when its output exists and training resumes, so rerunning the command
continues an interrupted study::

    python -m experiments.studies.recipe_study --out runs/recipe --frames 300000 --episodes 20
    python -m experiments.studies.recipe_study --out runs/recipe \
        --report experiments/reports/carracing-recipe-screen --seed-outs runs/recipe-seed1

``--arms squash,fs4`` runs a subset; ``--list`` prints the arms. ``--report DIR`` writes the report
folder: ``DIR/README.md`` (only its generated part: prose written by hand around it is kept), its
figure, and ``DIR/records/``, where it copies what it reads of every arm (no weights,
``records/<out name>/<arm>/``) and which study it tabulated (``records/study.json``), to be
committed with it; ``--out`` and ``--seed-outs`` pointing there write the report again once the
runs are gone (``python -m experiments.rebuild`` does it for every committed report).
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.hyperparams import EVAL_SEED_OFFSET
from experiments.pipeline.markdown import mean_ci, relative, write_markdown
from experiments.pipeline.report import RECORDS_DIR, REPORT_FILE
from worldmodel.common.atomic import atomic_dir

ENV_ID = "CarRacing-v3"
SHIPPED_VAE = "experiments/pretrained/carracing/vae.safetensors"
PPO_BASE = Path("experiments/envpool/ppo-latent-fast.yaml")
SAC_BASE = Path("experiments/recipe/sac-latent.yaml")
SHIPPED_MEMORY = "experiments/pretrained/carracing/memory.safetensors"
EVAL_SEED = EVAL_SEED_OFFSET
"""Episode seeds of evaluation start here: the tracks no agent trains on (seed 0 + the offset)."""
PPO_POLICY = "dict(log_std_init=-2, ortho_init=False, activation_fn=nn.GELU, net_arch=dict(pi=[256], vf=[256]))"
SQUASHED_POLICY = PPO_POLICY.replace("ortho_init=False,", "ortho_init=False, squash_output=True,")


@dataclass(frozen=True)
class Arm:
    """One screening run: a change of one factor from the base recipe."""

    name: str
    factor: str
    value: str
    overrides: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters merged over the base file's CarRacing-v3 entry (a value of None drops the base's key)."""
    algo: str = "ppo"
    latent_history: int = 2
    include_action: bool = False
    extra_args: tuple[str, ...] = ()
    """More `worldmodel train-agent` arguments (e.g. --memory)."""
    vae: str | None = None
    """This arm's VAE checkpoint (None: the study's ``--vae``); the VAE-data arms make theirs first."""

    @property
    def base(self) -> Path:
        return SAC_BASE if self.algo in ("sac", "tqc", "crossq") else PPO_BASE


SQUASHED = {"policy_kwargs": SQUASHED_POLICY}
"""The first screening step (squashed actions make the deterministic action drive) is kept in every later PPO arm."""
VAE_DIR = "runs/recipe/vaes"
"""Where the VAE-data arms' VAEs are trained (commands in the report); each arm is the shipped preset's recipe."""

ARMS: tuple[Arm, ...] = (
    Arm("base", "base", "fast recipe: PPO, frame skip 2, history 2, lr 3e-4, gSDE"),
    Arm("squash", "actions", "tanh-squashed gSDE actions (base of the arms below)", SQUASHED),
    Arm("fs4", "frame skip", "4", {**SQUASHED, "frame_skip": 4}),
    Arm("fs1", "frame skip", "1", {**SQUASHED, "frame_skip": 1}),
    Arm("h1", "latent history", "1", SQUASHED, latent_history=1),
    Arm("h4", "latent history", "4", SQUASHED, latent_history=4),
    Arm("action", "previous action", "in the observation", SQUASHED, include_action=True),
    Arm(
        "memory",
        "memory model",
        "[z, h]: MDN-RNN hidden state, history 1",
        SQUASHED,
        latent_history=1,
        extra_args=("--memory", SHIPPED_MEMORY),
    ),
    Arm("nosde", "exploration", "no gSDE, so no squashing (state-independent noise)", {"use_sde": False}),
    Arm("lr-lin", "learning rate", "lin_3e-4", {**SQUASHED, "learning_rate": "lin_3.0e-4"}),
    Arm("lr-1e-4", "learning rate", "1e-4", {**SQUASHED, "learning_rate": 1.0e-4}),
    Arm("epochs5", "n_epochs", "5", {**SQUASHED, "n_epochs": 5}),
    Arm("nsteps512", "n_steps", "512", {**SQUASHED, "n_steps": 512}),
    Arm("sac", "algorithm", "SAC (zoo-style AE recipe)", algo="sac"),
    Arm("tqc", "algorithm", "TQC (zoo-style AE recipe)", algo="tqc"),
    Arm(
        "tqc-g4",
        "TQC gradient steps",
        "4 every 4 steps of the 2 envs (0.5 per transition; tqc: 10, 1.25)",
        {"gradient_steps": 4},
        algo="tqc",
    ),
    Arm(
        "tqc-b512",
        "TQC gradient steps",
        "5 of batch 512 every 4 steps (tqc's samples per transition in half the steps)",
        {"gradient_steps": 5, "batch_size": 512},
        algo="tqc",
    ),
    Arm("tqc-lin", "TQC learning rate", "lin_7.3e-4 (linear decay to 0)", {"learning_rate": "lin_7.3e-4"}, algo="tqc"),
    Arm("tqc-cos", "TQC learning rate", "cos_7.3e-4 (cosine decay to 0)", {"learning_rate": "cos_7.3e-4"}, algo="tqc"),
    Arm(
        "crossq",
        "algorithm",
        "CrossQ (batch-renormalised critics, no target networks; lr 1e-3, 8 gradient steps every 4 steps of the "
        "2 envs: one per transition)",
        {"learning_rate": 1.0e-3, "gradient_steps": 8, "tau": None},
        algo="crossq",
    ),
    Arm(
        "tqc-memory",
        "memory model",
        "TQC on [z, h]: the shipped MDN-RNN's hidden state, history 1",
        algo="tqc",
        latent_history=1,
        extra_args=("--memory", SHIPPED_MEMORY),
    ),
    Arm(
        "recurrentppo",
        "algorithm",
        "RecurrentPPO, history 1",
        {**SQUASHED, "policy": "MlpLstmPolicy"},
        "recurrentppo",
        1,
    ),
    Arm(
        "vae-long",
        "VAE data",
        "20 full-length Brownian episodes (19k frames, 5 epochs)",
        SQUASHED,
        include_action=True,
        vae="runs/envpool-fidelity/vae-gymnasium/best.safetensors",
    ),
    Arm(
        "vae-agent",
        "VAE data",
        "160 episodes driven by a trained agent (75k frames, same optimiser steps)",
        SQUASHED,
        include_action=True,
        vae=f"{VAE_DIR}/agent/best.safetensors",
    ),
    Arm(
        "vae-crop",
        "VAE data",
        "dashboard cropped off (rows 84-95), else as the shipped VAE",
        SQUASHED,
        include_action=True,
        vae=f"{VAE_DIR}/crop/best.safetensors",
    ),
    Arm(
        "vae-kltol",
        "VAE information",
        "World Models' KL tolerance 0.5 (KL floored at 16 nats; the shipped VAE's is 6.5), else as shipped",
        SQUASHED,
        include_action=True,
        vae=f"{VAE_DIR}/kltol/best.safetensors",
    ),
    Arm(
        "standardize",
        "latent scaling",
        "VAE statistics instead of VecNormalize obs",
        {**SQUASHED, "normalize": {"norm_obs": False, "norm_reward": True}},
        extra_args=("--standardize-latents",),
    ),
)


def arm_named(name: str) -> Arm:
    for arm in ARMS:
        if arm.name == name:
            return arm
    raise SystemExit(f"unknown arm {name!r}; known: {', '.join(a.name for a in ARMS)}")


def hyperparams(arm: Arm) -> dict[str, Any]:
    """The arm's full CarRacing-v3 entry: the base file's, with the arm's overrides."""
    entry = copy.deepcopy(yaml.safe_load(arm.base.read_text())[ENV_ID])
    entry.update(arm.overrides)
    return {key: value for key, value in entry.items() if value is not None}  # None: the base's key dropped


def vae_finished(checkpoint: Path) -> bool:
    """Whether ``train-vae`` has finished the run that holds ``checkpoint``.

    ``best.safetensors`` appears after the first epoch, so only the run's ``summary.json``, written
    last, says that the VAE an arm would train on is final.
    """
    return checkpoint.is_file() and (checkpoint.parent / "summary.json").is_file()


def frame_skip(arm: Arm) -> int:
    return int(hyperparams(arm)["frame_skip"])


def _worldmodel(*args: str) -> None:
    command = [sys.executable, "-m", "worldmodel", *args]
    print("+ worldmodel " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def train(arm: Arm, run: Path, frames: int, vae: str, seed: int) -> None:
    if (run / "summary.json").is_file():
        return
    run.parent.mkdir(parents=True, exist_ok=True)
    params = run.parent / f"{run.name}.yaml"
    params.write_text(yaml.safe_dump({ENV_ID: hyperparams(arm)}, sort_keys=False))
    args = [
        "train-agent", ENV_ID, "--vae", arm.vae or vae, "--algo", arm.algo, "--hyperparams", str(params),
        "--latent-history", str(arm.latent_history), "--backend", "envpool", "--seed", str(seed),
        "--timesteps", str(frames // frame_skip(arm)), "--eval-freq", str(max(1, frames // 8 // frame_skip(arm))),
        "--eval-episodes", "5", "--out", str(run), *arm.extra_args,
    ]  # fmt: skip
    args.append("--include-action" if arm.include_action else "--no-include-action")  # never the preset's
    if (run / "config.json").is_file():
        args.append("--resume")
    _worldmodel(*args)


def evaluate(run: Path, episodes: int, deterministic: bool) -> dict[str, Any]:
    path = run / f"screen-{'deterministic' if deterministic else 'sampled'}.json"
    if not path.is_file():
        flag = "--deterministic" if deterministic else "--no-deterministic"
        _worldmodel("evaluate", str(run), "--backend", "envpool", "--episodes", str(episodes),
                    "--seed", str(EVAL_SEED), flag, "--out", str(path))  # fmt: skip
    return json.loads(path.read_text())


def gas_stats(run: Path, episodes: int = 2) -> dict[str, Any]:
    """:func:`experiments.studies.action_stats.action_stats` of the arm, cached in the run directory."""
    from experiments.studies.action_stats import action_stats

    path = run / "action-stats.json"
    if not path.is_file():
        path.write_text(json.dumps(action_stats(run, episodes)) + "\n")
    return json.loads(path.read_text())


def last_training_return(run: Path) -> float | None:
    """The last `rollout/ep_rew_mean` (sampled actions, last 100 episodes) SB3 logged, cached in the run directory
    (``training-return.json``) so that its records need not carry the TensorBoard log."""
    path = run / TRAINING_RETURN_FILE
    if not path.is_file():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        values: list[tuple[int, float]] = []
        for events in sorted((run / "tb").glob("*")):
            acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
            acc.Reload()
            if "rollout/ep_rew_mean" in acc.Tags()["scalars"]:
                values += [(e.step, e.value) for e in acc.Scalars("rollout/ep_rew_mean")]
        path.write_text(json.dumps({"last_training_return": max(values)[1] if values else None}) + "\n")
    return json.loads(path.read_text())["last_training_return"]


def row(arm: Arm, run: Path) -> str:
    summary = json.loads((run / "summary.json").read_text())
    det, sampled = _returns(run, "deterministic"), _returns(run, "sampled")
    training = last_training_return(run)
    fps = summary["env_frames"] / summary["elapsed_s"]
    gas = json.loads((run / "action-stats.json").read_text())
    return (
        f"| {arm.factor} | {arm.value} | `{arm.name}` | {summary['env_frames']:,} | {summary['elapsed_s'] / 60:.1f} | "
        f"{fps:.0f} | **{mean_ci(det)}** | {mean_ci(sampled)} | "
        f"{'-' if training is None else f'{training:.1f}'} | {gas['deterministic_mean']['gas']:.2f} | "
        f"{gas['deterministic_at_low']['gas']:.0%} | {gas['sampled_mean']['gas']:.2f} |"
    )


def screening_note(out: Path, arms: list[Arm]) -> str:
    """What the screening table holds, with the training seeds of ``out``'s finished arms."""
    seeds = sorted({json.loads((out / arm.name / "config.json").read_text())["agent"]["seed"] for arm in arms})
    return SCREENING_NOTE.format(seeds=" and ".join(map(str, seeds)) or "-")


SCREENING_NOTE = (
    "Each arm: seed {seeds}, ~303k env frames on EnvPool over the shipped VAE (the VAE-data arms: their own), "
    "scored on the same 20 EnvPool tracks (episode seeds from 1,000,000) with deterministic and with sampled "
    "actions (gSDE noise redrawn as in training); mean and 95% CI over the 20 tracks. *Last training return*:"
    " SB3's `rollout/ep_rew_mean` (sampled actions, last 100 episodes). *Gas* columns "
    "(`experiments.studies.action_stats`, 2 tracks): the mean deterministic and sampled gas at the states the agent "
    "visits, and the share of steps whose deterministic action gives no gas. Minutes and env frames/s were "
    "measured on a shared 2-core machine (other jobs ran beside every arm), so compare them only roughly."
)


TRAINING_RETURN_FILE = "training-return.json"
ARM_RECORDS = (
    "config.json",
    "summary.json",
    "screen-deterministic.json",
    "screen-sampled.json",
    "action-stats.json",
    TRAINING_RETURN_FILE,
    "evaluations.npz",
)
"""What the report reads of a finished arm: no weights, a few kB."""
STUDY_FILE = "study.json"
"""``records/study.json``: the folders (``out``, ``seed_outs``: names inside the records) and ``arms`` tabulated."""


def copy_records(outs: list[Path], arms: list[Arm], dest: Path) -> Path:
    """Copy :data:`ARM_RECORDS` of each finished arm of ``outs`` to ``dest/<out name>/<arm>/``, and the study's
    :data:`STUDY_FILE`; returns ``dest``.

    ``dest`` is replaced as a whole; the report is written again from it with ``--out dest/<name>`` and
    ``--seed-outs dest/<name>...`` (:func:`write_report_from_records`).
    """
    names = [out.name for out in outs]
    if len(set(names)) < len(names):
        raise SystemExit(f"--out and --seed-outs need distinct folder names to keep their records apart: {names}")
    with atomic_dir(dest) as tmp:
        study = {"out": names[0], "seed_outs": names[1:], "arms": [arm.name for arm in arms]}
        (tmp / STUDY_FILE).write_text(json.dumps(study, indent=1) + "\n")
        for out in outs:
            for arm in finished_arms(out, arms):
                last_training_return(out / arm.name)  # cached for the copy
                (tmp / out.name / arm.name).mkdir(parents=True)
                for name in ARM_RECORDS:
                    shutil.copy2(out / arm.name / name, tmp / out.name / arm.name / name)
    return dest


def finished_arms(out: Path, arms: list[Arm]) -> list[Arm]:
    """The arms whose run in ``out`` is trained and scored (its action statistics, written last, exist)."""
    return [arm for arm in arms if (out / arm.name / "action-stats.json").is_file()]


def screening_table(out: Path, arms: list[Arm]) -> str:
    header = (
        "| factor | value | arm | env frames | minutes | env frames/s | deterministic (95% CI) | sampled (95% CI) "
        "| last training return | deterministic gas | no gas (deterministic) | sampled gas |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    return "\n".join([header, *(row(arm, out / arm.name) for arm in finished_arms(out, arms))])


SEEDS_NOTE = (
    "Arms trained again with other seeds (`--seed S --out runs/recipe-seedS`, the same protocol and tracks). "
    "The interval is over the seeds' 20-track means (Student's t, so two seeds give a wide one)."
)


def seed_table(outs: list[Path], arms: list[Arm]) -> str | None:
    """Each arm finished in two or more of ``outs`` (one seed each): its per-seed scores and their mean.

    None when no arm has two seeds.
    """
    rows = []
    for arm in arms:
        runs = [out / arm.name for out in outs if finished_arms(out, [arm])]
        if len(runs) < 2:
            continue
        seeds = [json.loads((run / "config.json").read_text())["agent"]["seed"] for run in runs]
        det, sampled = ([np.mean(_returns(run, mode)) for run in runs] for mode in ("deterministic", "sampled"))
        per_seed = ", ".join(f"{score:.1f} (seed {seed})" for seed, score in sorted(zip(seeds, det, strict=True)))
        rows.append(f"| `{arm.name}` | {len(runs)} | {per_seed} | **{mean_ci(det)}** | {mean_ci(sampled)} |")
    if not rows:
        return None
    header = (
        "| arm | seeds | deterministic, per seed | deterministic, mean over seeds (95% CI) "
        "| sampled, mean over seeds (95% CI) |\n|---|---:|---|---:|---:|"
    )
    return "\n".join([header, *rows])


def _returns(run: Path, mode: str) -> list[float]:
    return json.loads((run / f"screen-{mode}.json").read_text())["returns"]


def plot_curves(out: Path, arms: list[Arm], path: Path) -> Path:
    """Each finished arm's evaluations during training (5 tracks each) against env frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    # the colour cycle has 10 colours: the line style tells repeats apart
    for k, arm in enumerate(finished_arms(out, arms)):
        evaluations = np.load(out / arm.name / "evaluations.npz", allow_pickle=False)
        frames = evaluations["timesteps"] * frame_skip(arm)
        style = ("-", "--", ":")[k // 10 % 3]
        ax.plot(frames, evaluations["results"].mean(axis=1), marker="o", linestyle=style, label=arm.name)
    ax.set_xlabel("env frames")
    ax.set_ylabel("mean return, deterministic (5 EnvPool tracks)")
    ax.set_title("CarRacing-v3 screening arms during training")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(out: Path, arms: list[Arm], report: Path, seed_outs: Sequence[Path] = ()) -> Path:
    """Write the screening report folder ``report``: the tables of ``arms`` finished in ``out`` (and of those repeated
    in ``seed_outs``) as the generated part of ``report/README.md``, its figure, and its records; returns the README.
    """
    figure = plot_curves(out, arms, report / "screening_curves.png")
    curves = f"![screening curves]({figure.name})"
    table = screening_table(out, arms)
    outs = [out, *seed_outs]
    seeds = seed_table(outs, arms)
    repeated = ["## Arms repeated over seeds", SEEDS_NOTE, seeds] if seeds else []
    records = report / RECORDS_DIR
    if not all(o.resolve().is_relative_to(records.resolve()) for o in outs):
        copy_records(outs, arms, records)
    again = f"--out {relative(records / out.name)}"
    if seed_outs:
        again += " --seed-outs " + " ".join(relative(records / o.name) for o in seed_outs)
    kept = (
        "Each arm's records (config, summary, scores, action statistics, training evaluations; no weights) are "
        f"kept in `{relative(records)}`: `--report {relative(report)}` with `{again}` writes these tables again."
    )
    note = screening_note(out, finished_arms(out, arms))
    return write_markdown(report / REPORT_FILE, ["## The screening table", note, table, curves, *repeated, kept])


def write_report_from_records(records: Path, report: Path) -> Path:
    """Write the report folder ``report`` again from a report's ``records`` folder alone (its :data:`STUDY_FILE`
    names what it tabulated); returns the README."""
    study = json.loads((records / STUDY_FILE).read_text())
    arms = [arm_named(name) for name in study["arms"]]
    return write_report(records / study["out"], arms, report, [records / name for name in study["seed_outs"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/recipe"), help="Directory of the arms' runs.")
    parser.add_argument("--arms", default=None, help="Comma-separated arm names (default: all, in order).")
    parser.add_argument("--frames", type=int, default=300_000, help="Env frames per arm.")
    parser.add_argument("--episodes", type=int, default=20, help="EnvPool tracks each arm is scored on.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", default=SHIPPED_VAE)
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="Write the report folder here (DIR/README.md, its figure, DIR/records) and stop; prose written by hand "
        "around the README's generated part is kept.",
    )
    parser.add_argument(
        "--seed-outs",
        type=Path,
        nargs="*",
        default=[],
        help="With --report: directories of the same arms trained with other seeds; arms with two or more seeds "
        "get a table of their seeds.",
    )
    parser.add_argument("--list", action="store_true", help="Print the arms and stop.")
    args = parser.parse_args(argv)
    arms = [arm_named(name) for name in args.arms.split(",")] if args.arms else list(ARMS)
    if args.list:
        for arm in arms:
            print(f"{arm.name:14s} {arm.factor}: {arm.value}")
        return 0
    if args.report is not None:
        print(f"wrote {write_report(args.out, arms, args.report, args.seed_outs)}")
        return 0
    failed = []
    for arm in arms:
        run = args.out / arm.name
        if arm.vae and not vae_finished(Path(arm.vae)):
            print(f"arm {arm.name}: its VAE {arm.vae} is not finished yet (no summary.json beside it); "
                  "make it first (the report's commands)", file=sys.stderr, flush=True)  # fmt: skip
            failed.append(arm.name)
            continue
        try:
            train(arm, run, args.frames, args.vae, args.seed)
            for deterministic in (True, False):
                evaluate(run, args.episodes, deterministic)
        except subprocess.CalledProcessError as exc:  # its error is printed above; the next arm goes on
            print(f"arm {arm.name} failed ({exc}); rerun the study to retry it", file=sys.stderr, flush=True)
            failed.append(arm.name)
            continue
        gas_stats(run)
        print(row(arm, run), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
