# Over 600 lines on purpose: every section of a pipeline report reads the same AgentRun records.
"""Turn a pipeline output directory into a markdown report: ``python -m experiments.pipeline.report OUT --name NAME``.

A report is one folder, ``REPORT_DIR/<name>/``: the report, ``README.md``, beside the PNGs it
shows: learning curves (every agent run, return against env frames and against
wall-clock), and the VAE's reconstructions and prior samples (copied from the VAE run).
The report holds the returns table (mean ± std over the evaluation episodes per run,
mean and 95% confidence interval across seeds when there are at least two) beside the
published CarRacing anchors, the per-stage table from ``stages.json`` (wall-clock, env
frames, agent steps, steps/s, peak memory), the training throughput against its goals, the
machine, the commands that made it, and a plain statement of the milestones reached.
``REPORT_DIR/<name>/records/`` keeps the runs' records (no weights): the report can be written
again from it, and other pipelines compared with it, after the pipeline output is gone.

Every report writer of the project writes through :func:`write_markdown`: the generated part of
a report lies between two comment lines, and prose written by hand above or below them is kept
when the report is written again.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from agents.bundle import EVALUATIONS_FILE, read_best
from experiments.pipeline.config import PipelineConfig
from experiments.pipeline.markdown import (
    cell,
    confidence_interval,
    relative,
    write_markdown,
)
from experiments.pipeline.records import (
    BEST_EVALUATION_FILE,
    EVALUATION_FILE,
    PIPELINE_FILE,
    VIDEO_FILE,
    copy_records,
    current_evaluation,
    read_json,
    read_stages,
)
from worldmodel.common.atomic import atomic_path

ANCHORS: tuple[tuple[str, str, str], ...] = (
    ("World Models: VAE + linear controller (CMA-ES)", "632 ± 251", "CarRacing-v0, 100 tracks"),
    ("World Models: VAE + hidden-layer controller", "788 ± 141", "CarRacing-v0, 100 tracks"),
    ("World Models: full model (V+M+C)", "906 ± 21", "CarRacing-v0, 100 tracks"),
    ("rl-zoo PPO from pixels (CnnPolicy)", "~429", "CarRacing-v3, 4M agent steps = 8M frames"),
    ("rl-zoo PPO-LSTM from pixels (CnnLstmPolicy)", "862 ± 97", "CarRacing-v0, 4M agent steps, no frame skip"),
)
MILESTONES: tuple[tuple[float, str], ...] = (
    (429.0, "beats rl-zoo's pixel PPO at 8M frames (429)"),
    (632.0, "beats World Models' VAE + linear controller (632)"),
    (788.0, "beats World Models' VAE + hidden layer (788)"),
    (900.0, "reaches 900 (solved)"),
)
MILESTONE_ENV = "CarRacing-v3"
VAE_FIGURES = (("recon.png", "VAE reconstructions"), ("samples.png", "VAE prior samples"))
THROUGHPUT_GOAL_VS_PIXELS = 2.0
"""Goal: latent training makes at least this many times the pixel recipe's env frames per second."""
THROUGHPUT_GOAL_VS_ENV = 0.8
"""Goal: latent training runs at at least this fraction of the raw env speed on the same machine."""
BUDGET_TOLERANCE = 0.01
"""Env-frame budgets this close (relative) count as the same budget."""
FIRST_MILESTONE_FRAMES = 1_000_000
"""The first milestone (> 429) counts only when reached within this many env frames."""
LONGEST_GOAL_FRAMES = 4_000_000
"""The longest budget the goals allow (> 788 and toward 900 within 4M env frames): past it, train no longer."""


@dataclass(frozen=True)
class AgentRun:
    """One trained agent of the pipeline, with its final evaluation."""

    mode: str
    """The algorithm (latents), ``pixels-<algo>`` or ``finetune-<algo>``."""
    seed: int
    run_dir: Path
    summary: dict[str, Any]
    evaluation: dict[str, Any] | None
    """None when missing, or when older than the model (trained further since)."""
    arm: str | None = None
    """A name that replaces the label, for runs of one mode made in different ways (iterative rounds)."""

    @property
    def pixels(self) -> bool:
        return self.mode.startswith("pixels-")

    @property
    def finetune(self) -> bool:
        """Whether the policy fine-tuned its own copy of the VAE encoder."""
        return self.mode.startswith("finetune-")

    @property
    def label(self) -> str:
        """``ppo on latents``, ``ppo on pixels`` or ``ppo, fine-tuned encoder`` (or the arm's name)."""
        if self.arm is not None:
            return self.arm
        if self.pixels:
            return f"{self.mode.removeprefix('pixels-')} on pixels"
        if self.finetune:
            return f"{self.mode.removeprefix('finetune-')}, fine-tuned encoder"
        return f"{self.mode} on latents"


def read_run(run_dir: Path, arm: str | None = None, evaluation_file: str = EVALUATION_FILE) -> AgentRun | None:
    """The agent run in ``run_dir`` (named ``<mode>__seed<k>``) with the evaluation in ``evaluation_file``,
    or None before its summary.json exists."""
    summary = read_json(run_dir / "summary.json")
    if summary is None:
        return None
    mode, seed = run_dir.name.rsplit("__seed", 1)
    return AgentRun(mode, int(seed), run_dir, summary, current_evaluation(run_dir, evaluation_file), arm)


def find_runs(out: Path) -> list[AgentRun]:
    """Every finished agent run under ``out/agents`` (``<mode>__seed<k>`` with a summary.json)."""
    return [run for d in sorted((out / "agents").glob("*__seed*")) if (run := read_run(d)) is not None]


SAME_TRACKS = ("env_id", "evaluate.episodes", "evaluate.seed", "evaluate.n_envs")
"""Pipeline settings that decide which tracks the final evaluation scores."""


def read_pipeline(out: Path) -> dict[str, Any]:
    """``out``'s ``pipeline.json`` (its config, commands and machines)."""
    pipeline = read_json(out / PIPELINE_FILE)
    if pipeline is None:
        raise FileNotFoundError(f"{out / PIPELINE_FILE} is missing: {out} is not a pipeline output directory")
    return pipeline


def compared_runs(
    config: PipelineConfig, runs: list[AgentRun], others: list[Path]
) -> tuple[list[AgentRun], dict[Path, dict[str, Any]]]:
    """The agent runs and ``pipeline.json`` records of the pipeline outputs ``others``, to report beside ``runs``
    (made with ``config``): refused unless scored on the same tracks, and where a mode is in more than one output
    (its seeds would be pooled across recipes)."""
    compared, pipelines = [], {}
    modes = {run.mode: "this pipeline" for run in runs}
    for other in others:
        pipeline = pipelines[other] = read_pipeline(other)
        theirs, ours = (attrgetter(*SAME_TRACKS)(c) for c in (PipelineConfig.from_dict(pipeline["config"]), config))
        differ = [f"{key} {a!r} against {b!r}" for key, a, b in zip(SAME_TRACKS, theirs, ours, strict=True) if a != b]
        if differ:
            raise ValueError(
                f"{other} scored its agents on other tracks ({', '.join(differ)}): compare only pipelines evaluated "
                "alike"
            )
        for run in find_runs(other):
            if modes.setdefault(run.mode, str(other)) != str(other):
                raise ValueError(
                    f"{run.mode} runs are in both {modes[run.mode]} and {other}: their seeds would be pooled as one "
                    "recipe; compare pipelines whose agents differ"
                )
            compared.append(run)
    return compared, pipelines


def _mode_key(runs: list[AgentRun], run: AgentRun) -> str:
    """The run's label, with its budget when runs of that label were trained for different budgets.

    Seeds are only pooled at equal env frames: a run resumed to a larger budget is not
    averaged with seeds left at the smaller one.
    """
    budgets = {_budget(runs, r) for r in runs if r.label == run.label and r.evaluation}
    return run.label if len(budgets) <= 1 else f"{run.label} ({_budget(runs, run):,} frames)"


def same_budget(a: float, b: float) -> bool:
    """Budgets within 1% are equal: a run stops at an episode or rollout end, a few frames either way."""
    return abs(a - b) <= BUDGET_TOLERANCE * max(a, b)


def _budget(runs: list[AgentRun], run: AgentRun) -> int:
    """The run's budget: the most env frames among runs of its label with the same budget as its own."""
    own = run.summary["env_frames"]
    return max(
        r.summary["env_frames"] for r in runs if r.label == run.label and same_budget(r.summary["env_frames"], own)
    )


def returns_table(runs: list[AgentRun], anchors: bool = True) -> tuple[str, dict[str, dict[str, Any]]]:
    """The markdown returns table, and per mode (and budget, where they differ) its across-seed aggregate;
    ``anchors``: with the published CarRacing scores below it."""
    lines = [
        "| agent | seed | eval return (mean ± std over episodes) | episodes | env frames | agent steps "
        "| training wall-clock |",
        "|---|---|---|---|---|---|---|",
    ]
    modes: dict[str, dict[str, Any]] = {}
    random_row = None
    for run in runs:
        ev = run.evaluation
        label = run.label
        ret = f"{ev['mean_return']:.1f} ± {ev['std_return']:.1f}" if ev else "not evaluated at this budget"
        lines.append(
            f"| {label} | {run.seed} | {ret} | {ev['episodes'] if ev else '–'} | {cell(run.summary['env_frames'])} "
            f"| {cell(run.summary['agent_steps'])} | {cell(run.summary['elapsed_s'] / 60)} min |"
        )
        if ev:
            agg = modes.setdefault(_mode_key(runs, run), {"means": [], "env_frames": [], "agent_steps": []})
            agg["means"].append(ev["mean_return"])
            agg["env_frames"].append(run.summary["env_frames"])
            agg["agent_steps"].append(run.summary["agent_steps"])
            if "random" in ev and random_row is None:
                r = ev["random"]
                random_row = f"| uniform random policy | – | {r['mean_return']:.1f} ± {r['std_return']:.1f} | {ev['episodes']} | – | – | – |"  # noqa: E501
    for label, agg in modes.items():
        agg["mean"] = float(np.mean(agg["means"]))
        agg["ci95"] = confidence_interval(agg["means"]) if len(agg["means"]) >= 2 else None
        ci = f" (95% CI ± {agg['ci95']:.1f})" if agg["ci95"] is not None else " (one seed: no CI)"
        lines.append(
            f"| **{label}, {len(agg['means'])} seed(s)** | all | **{agg['mean']:.1f}**{ci} | | "
            f"{cell(int(np.mean(agg['env_frames'])))} | {cell(int(np.mean(agg['agent_steps'])))} | |"
        )
    if random_row:
        lines.append(random_row)
    if anchors:
        lines += [f"| *published:* {name} | | {score} | | {where} | | |" for name, score, where in ANCHORS]
    return "\n".join(lines), modes


def best_policy_table(runs: list[AgentRun]) -> str | None:
    """Markdown table of the runs' best training-evaluation policies (``train-agent --keep-best``) scored on the
    final evaluation's tracks, beside their final policies; None when no run has such an evaluation."""
    lines = [
        "| agent | seed | kept at env frames | its training evaluation | best policy, final tracks "
        "| final policy, final tracks |",
        "|---|---|---|---|---|---|",
    ]
    means: dict[str, list[float]] = {}
    for run in runs:
        best, ev = read_best(run.run_dir), current_evaluation(run.run_dir, BEST_EVALUATION_FILE)
        if best is None or ev is None:
            continue
        final = f"{run.evaluation['mean_return']:.1f}" if run.evaluation else "–"
        lines.append(
            f"| {run.label} | {run.seed} | {cell(best['env_frames'])} | {best['mean_return']:.1f} "
            f"({best['episodes']} episodes) | {ev['mean_return']:.1f} ± {ev['std_return']:.1f} | {final} |"
        )
        means.setdefault(run.label, []).append(ev["mean_return"])
    if not means:
        return None
    for label, values in means.items():
        ci = f" (95% CI ± {confidence_interval(values):.1f})" if len(values) >= 2 else " (one seed: no CI)"
        lines.append(f"| **{label}, {len(values)} seed(s)** | all | | | **{np.mean(values):.1f}**{ci} | |")
    return "\n".join(lines)


def stages_table(stages: dict[str, Any], order: list[str]) -> str:
    """The markdown table of ``stages.json``, stages in pipeline ``order`` (unknown ones last)."""
    lines = [
        "| stage | wall-clock | env frames | agent steps | steps/s | env frames/s | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = [n for n in order if n in stages] + sorted(set(stages) - set(order))
    for name in names:
        r = stages[name]
        wall = f"{r['wall_s']:.1f} s" if "wall_s" in r else r.get("note", "–")
        lines.append(
            f"| {name} | {wall} | {cell(r.get('env_frames'))} | {cell(r.get('agent_steps'))} "
            f"| {cell(r.get('steps_per_s'))} | {cell(r.get('frames_per_s'))} | {cell(r.get('peak_rss_mib'))} |"
        )
    return "\n".join(lines)


_LOAD_AT_START = re.compile(r" \(([^)]*) at start\)")


def _machine_names(machines: list[str]) -> set[str]:
    """Distinct machines among pipeline.json's descriptions (which differ by their load average too)."""
    return {_LOAD_AT_START.sub("", m) for m in machines}


def machine_list(machines: list[str]) -> str:
    """The Machine section's lines: each machine once, with the load each command found on it.

    >>> print(machine_list(["CPU, 2 cores (load avg 0.1 at start)", "CPU, 2 cores (load avg 2.0 at start)"]))
    - CPU, 2 cores: 2 commands; at start: load avg 0.1; load avg 2.0
    """
    by_machine: dict[str, list[str]] = {}
    for description in machines:
        by_machine.setdefault(_LOAD_AT_START.sub("", description), []).append(description)
    if not by_machine:
        return "- not recorded"
    lines = []
    for name, descriptions in by_machine.items():
        loads = [load for d in descriptions for load in _LOAD_AT_START.findall(d)]
        at_start = f"; at start: {'; '.join(loads)}" if loads else ""
        lines.append(f"- {name}: {len(descriptions)} command{'s' if len(descriptions) > 1 else ''}{at_start}")
    return "\n".join(lines)


def throughput_statement(runs: list[AgentRun], stages: dict[str, Any], machines: list[str]) -> str:
    """Training env frames/s per mode against the throughput goals: 2x the pixel recipe, 80% of the raw env.

    A run's rate is its env frames over its training wall-clock (all sessions); the whole-pipeline
    rate of a latent run adds the collection and VAE-training wall-clock, counted in full for
    every seed. The raw env speed is the collect stage's (random actions, its worker processes).
    """
    rates: dict[str, list[float]] = {}
    budgets: dict[str, int] = {}
    for run in runs:
        if run.summary.get("elapsed_s"):
            key = _mode_key(runs, run)
            rates.setdefault(key, []).append(run.summary["env_frames"] / run.summary["elapsed_s"])
            budgets[key] = _budget(runs, run)
    if not rates:
        return "No agent run recorded its training time."
    pre_s = sum(stages.get(name, {}).get("wall_s", 0.0) for name in ("collect", "train-vae"))
    env_rate = stages.get("collect", {}).get("frames_per_s")
    pixels = [k for k in rates if "on pixels" in k]
    lines = [
        "| agent | env frames/s (mean over seeds) | against the pixel recipe (nearest budget) | against the raw env |",
        "|---|---|---|---|",
    ]
    verdicts = []
    for label, values in rates.items():
        rate = float(np.mean(values))
        pix = min(pixels, key=lambda k: abs(budgets[k] - budgets[label]), default=None)
        vs_pix = rate / float(np.mean(rates[pix])) if pix else None
        vs_env = rate / env_rate if env_rate else None
        lines.append(
            f"| {label} | {rate:.1f} | {f'{vs_pix:.2f}x' if vs_pix else '–'} | {f'{vs_env:.0%}' if vs_env else '–'} |"
        )
        if "on latents" in label and vs_pix:
            met = "met" if vs_pix >= THROUGHPUT_GOAL_VS_PIXELS else "not met"
            verdicts.append(f"{label}: {vs_pix:.2f}x the pixel recipe's env frames/s (goal >= "
                            f"{THROUGHPUT_GOAL_VS_PIXELS:.0f}x: {met})")  # fmt: skip
        if "on latents" in label and vs_env:
            met = "met" if vs_env >= THROUGHPUT_GOAL_VS_ENV else "not met"
            verdicts.append(f"{label}: {vs_env:.0%} of the raw env speed (goal >= {THROUGHPUT_GOAL_VS_ENV:.0%}: {met})")
    latent = [float(np.mean(v)) for k, v in rates.items() if "on latents" in k]
    if latent and pre_s:
        frames = np.mean([r.summary["env_frames"] for r in runs if "on latents" in r.label])
        whole = frames / (frames / max(latent) + pre_s)
        verdicts.append(f"whole pipeline (collection and VAE training added to the fastest latent mode): "
                        f"{whole:.1f} env frames/s")  # fmt: skip
    if env_rate is None:
        verdicts.append("the raw env speed is not known here (this output has no collect stage)")
    notes = ["Goals: " + "; ".join(verdicts) + "." if verdicts else "No latent agent to judge the goals by."]
    if (n_machines := len(_machine_names(machines))) > 1:
        notes.append(
            f"Caution: these runs span {n_machines} machines (see Machine), so the rates mix "
            "machines; compare modes only where they ran on the same one, at the same time."
        )
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)


def _curve(run: AgentRun) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    path = run.run_dir / EVALUATIONS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        steps, results = data["timesteps"].astype(float), data["results"]
    if len(steps) == 0:
        return None
    total = max(run.summary["agent_steps"], 1)
    frames = steps * run.summary["env_frames"] / total
    wall = steps * run.summary["elapsed_s"] / total
    # Measured at each evaluation where the run recorded it (exact across resumes and machines)
    measured = {point["step"]: point for point in run.summary.get("curve", [])}
    for i, step in enumerate(steps):
        if (point := measured.get(int(step))) is not None:
            frames[i], wall[i] = point["env_frames"], point["elapsed_s"]
    return frames, wall, results.mean(axis=1)


def plot_learning_curves(runs: list[AgentRun], path: Path) -> bool:
    """Eval return against env frames and against wall-clock, one line per run; False when no run has a curve."""
    curves = [(run, c) for run in runs if (c := _curve(run)) is not None]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_frames, ax_wall) = plt.subplots(1, 2, figsize=(11, 4))
    colors: dict[str, Any] = {}
    for run, (frames, wall, mean) in curves:
        color = colors.setdefault(run.label, f"C{len(colors)}")
        label = f"{run.label}, seed {run.seed}"
        ax_frames.plot(frames, mean, marker="o", color=color, label=label, alpha=0.8)
        ax_wall.plot(wall / 60, mean, marker="o", color=color, alpha=0.8)
    ax_frames.set(xlabel="env frames", ylabel="eval return (mean over episodes)", title="return vs env frames")
    ax_wall.set(xlabel="training wall-clock (min)", title="return vs wall-clock")
    for ax in (ax_frames, ax_wall):
        ax.grid(alpha=0.3)
    ax_frames.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return True


def milestone_statement(env_id: str, modes: dict[str, dict[str, Any]]) -> str:
    """Which milestones the best latent agent reached, and what the next run needs."""
    if env_id != MILESTONE_ENV:
        return f"Milestones are defined for {MILESTONE_ENV}; this run is on {env_id}."
    latent = {k: v for k, v in modes.items() if "on latents" in k}
    if not latent:
        return "No latent agent was evaluated, so no milestone can be judged; run the evaluate stages."
    label, best = max(latent.items(), key=lambda kv: kv[1]["mean"])
    frames = int(np.mean(best["env_frames"]))
    reached = [text for threshold, text in MILESTONES if best["mean"] > threshold]
    if reached and frames > FIRST_MILESTONE_FRAMES and not same_budget(frames, FIRST_MILESTONE_FRAMES):
        reached[0] += f" (but with {frames:,} env frames, more than the {FIRST_MILESTONE_FRAMES:,} the goal allows)"
    lines = [
        f"Best latent agent: {label}, mean return {best['mean']:.1f} across {len(best['means'])} seed(s) "
        f"at {frames:,} env frames."
    ]
    lines.append("Reached: " + "; ".join(reached) + "." if reached else "No milestone reached (the first is > 429).")
    pixels = [v for k, v in modes.items() if "on pixels" in k]
    pixels_ahead = False
    if pixels:  # the baseline nearest in budget, its budget named where it differs
        pix = min(pixels, key=lambda v: (abs(np.mean(v["env_frames"]) - frames), -len(v["means"])))
        pix_frames = int(np.mean(pix["env_frames"]))
        both_ci = best["ci95"] is not None and pix["ci95"] is not None
        separated = both_ci and best["mean"] - best["ci95"] > pix["mean"] + pix["ci95"]
        budget = (
            "at the same budget"
            if same_budget(pix_frames, frames)
            else f"trained for {pix_frames:,} env frames, not the same budget"
        )
        verdict = (
            f"beats the pixel baseline ({pix['mean']:.1f}, {budget}) with non-overlapping 95% CIs"
            if separated
            else f"{'scores above' if best['mean'] > pix['mean'] else 'does not beat'} the pixel baseline "
            f"({pix['mean']:.1f}, {budget})" + ("" if both_ci else "; a claim needs >= 3 seeds of each mode with CIs")
        )
        lines.append(f"Against pixels: the latent agent {verdict}.")
        pixels_ahead = same_budget(pix_frames, frames) and pix["mean"] > best["mean"]
    nxt = next((t for t, _ in MILESTONES if best["mean"] <= t), None)
    if nxt is not None and pixels_ahead:
        lines.append(
            f"Next run: the pixel recipe scores higher at this budget, so more frames on the same latent recipe "
            f"are not the first lever. Improve what the latents carry (the VAE's data and training) and the latent "
            f"recipe (learning-rate schedule, algorithm) at this budget, then train longer to pass {nxt:.0f}."
        )
    elif nxt is not None and (frames > LONGEST_GOAL_FRAMES or same_budget(frames, LONGEST_GOAL_FRAMES)):
        lines.append(
            f"Next run: {frames:,} env frames per agent, the longest budget the goals allow, did not pass "
            f"{nxt:.0f}, so training longer is not the lever. Change the recipe at a short budget (the SAC/TQC "
            "presets, latent history, the VAE's data), then train the winner to this budget."
        )
    elif nxt is not None:
        lines.append(
            f"Next run: to pass {nxt:.0f}, train longer (this run: {frames:,} env frames per agent; "
            f"the first milestone allows up to {FIRST_MILESTONE_FRAMES:,}), resume the same run directory with a "
            "larger agent_env_frames, and compare SAC/TQC presets and latent history (k=2-4) at that budget; "
            "retrain the VAE on the trained agent's frames if reconstructions of on-track states are poor."
        )
    return "\n\n".join(lines)


def report_title(env_id: str, runs: list[AgentRun], name: str) -> str:
    """The report's heading: what its agents observe, e.g. ``CarRacing-v3: agents on latents vs pixels (car)``."""
    kinds = {
        "latents": any(not run.pixels and not run.finetune for run in runs),
        "fine-tuned encoders": any(run.finetune for run in runs),
        "pixels": any(run.pixels for run in runs),
    }
    present = [kind for kind, found in kinds.items() if found]
    return f"# {env_id}: " + (f"agents on {' vs '.join(present)}" if present else "no trained agent yet") + f" ({name})"


RECORDS_DIR = "records"
"""``REPORT_DIR/<name>/records/``: the report's pipeline records (:func:`copy_records`), committed with it."""
REPORT_FILE = "README.md"
"""``REPORT_DIR/<name>/README.md``: the report itself, beside its PNGs and its records."""


def finished_clause(stages: dict[str, Any]) -> str:
    """When the last recorded stage finished, for the report's first line (nothing when none is recorded).

    >>> finished_clause({"a": {"finished": "2026-12-01T16:36:46"}, "b": {"finished": "2026-12-01T18:00:02"}})
    ', whose last stage finished 2026-12-01 18:00'
    """
    times = [record["finished"] for record in stages.values() if record.get("finished")]
    return f", whose last stage finished {max(times)[:16].replace('T', ' ')}" if times else ""


def write_report(
    out: str | Path,
    *,
    name: str,
    report_dir: str | Path = "experiments/reports",
    compare: Sequence[str | Path] = (),
    not_found: Sequence[str | Path] = (),
) -> Path:
    """Write the report ``report_dir/<name>/README.md`` (beside its PNGs and records) for the pipeline output ``out``;
    returns its path. Prose written by hand outside the report's generated part is kept (:func:`write_markdown`).

    ``compare``: other pipeline outputs, scored on the same tracks, whose agent runs join the tables and curves
    (e.g. the pixel runs of an earlier pipeline beside this one's latent runs); a report's ``records`` folder is
    one. ``not_found``: outputs meant to be compared that do not exist yet; the report says their runs are missing.
    """
    out, report_dir = Path(out), Path(report_dir)
    pipeline = read_pipeline(out)
    config = PipelineConfig.from_dict(pipeline["config"])  # recorded flat before the sections, or nested
    runs, stages = find_runs(out), read_stages(out)
    others = [Path(other) for other in compare]
    extra_runs, compared = compared_runs(config, runs, others)
    runs += extra_runs
    machines = [m for p in (pipeline, *compared.values()) for m in p.get("machines", [])]
    assets = report_dir / name
    assets.mkdir(parents=True, exist_ok=True)
    anchors = config.env_id.startswith("CarRacing")
    table, modes = returns_table(runs, anchors=anchors)
    best_table = best_policy_table(runs)
    best_section = [
        "### Best training-evaluation policies",
        "Each run also kept the policy of its best evaluation during training (`--keep-best`: a few episodes "
        "on the training backend, other tracks); here it is scored on the same final tracks. Choosing by a few "
        "episodes favours lucky evaluations, so the training evaluation overstates the policy.",
        best_table,
    ]
    parts = [
        report_title(config.env_id, runs, name),
        f"Written by `python -m experiments.pipeline.report {relative(out)} --name {name}` from the pipeline "
        f"output `{relative(out)}`{finished_clause(stages)}.",
        "## Machine",
        machine_list(machines),
        "## Returns",
        f"Final evaluation: every run on the same {config.evaluate.episodes} tracks (episode seeds from "
        f"{config.evaluate.seed}), deterministic actions."
        + (" Published figures are for comparison only: other budgets, other code." if anchors else ""),
        table,
        *(best_section if best_table else []),
        "## Milestones",
        milestone_statement(config.env_id, modes),
        "## Throughput",
        "Training env frames per second: a run's env frames over its training wall-clock, in all its sessions.",
        throughput_statement(runs, stages, machines),
        "## Stages",
        "Wall-clock per stage as run (a resumed stage shows its last session, while a training's steps/s and "
        "env frames/s are its whole run's, over its training wall-clock in all sessions); peak memory is the "
        "stage process's maximum resident set, its worker processes included.",
        stages_table(stages, [name for name, _ in pipeline.get("stage_commands", [])]),
    ]
    if plot_learning_curves(runs, assets / "learning_curves.png"):
        parts += [
            "## Learning curves",
            "Evaluation return during training. Env frames and wall-clock of each evaluation as the run "
            "recorded them; for evaluations of runs made before that record existed, interpolated from the "
            "run's totals (constant frames per step and throughput assumed).",
            "![learning curves](learning_curves.png)",
        ]
    vae_summary = read_json(out / "vae" / "summary.json")
    if vae_summary is not None:
        parts += [
            "## VAE",
            f"Held-out PSNR {vae_summary['val_psnr_db']:.1f} dB "
            f"(MSE per pixel {vae_summary['val_mse_per_pixel']:.5f}), "
            f"{vae_summary['active_dims']}/{vae_summary['latent_dim']} active latent dimensions, "
            f"{vae_summary['steps']:,} optimiser steps in {vae_summary['wall_s'] / 60:.1f} min "
            f"({vae_summary['images_per_s']:.0f} images/s).",
        ]
        for png, title in VAE_FIGURES:
            if (out / "vae" / png).is_file():
                shutil.copyfile(out / "vae" / png, assets / png)
            if (assets / png).is_file():  # copied now, or before when the report is written from its records
                parts.append(f"{title}:\n\n![{title}]({png})")
    elif config.vae.pretrained:
        reused = f"Every latent agent read the existing checkpoint `{config.vae.pretrained}`: this run trained no VAE."
        parts += ["## VAE", reused]
    videos = [run.run_dir / VIDEO_FILE for run in runs if (run.run_dir / VIDEO_FILE).is_file()]
    if videos:
        parts += ["## Videos", "\n".join(f"- `{relative(v)}`" for v in videos)]
    commands = "\n".join(pipeline.get("commands", [])) or "(not recorded)"
    stage_commands = "\n".join(cmd for _, cmd in pipeline.get("stage_commands", []))
    parts += [
        "## Commands",
        f"The pipeline:\n\n```\n{commands}\n```",
        f"Its stages as single commands:\n\n```\n{stage_commands}\n```",
    ]
    if compared:
        sources = "\n".join(
            f"- `{relative(other)}`: {', '.join(record.get('commands', []))}" for other, record in compared.items()
        )
        parts.append(f"Runs shown beside this pipeline's, scored on the same tracks, came from:\n\n{sources}")
    if not_found:
        missing = ", ".join(f"`{relative(Path(other))}`" for other in not_found)
        parts.append(
            f"Not shown: the runs of {missing}, meant to be compared with these, which did not exist when this "
            "report was written. Run that pipeline (or give its report's `records` folder), then write this report "
            "again."
        )
    records = assets / RECORDS_DIR
    if records.resolve() != out.resolve():
        copy_records(out, records)
    parts.append(
        f"The runs' records (configs, summaries, evaluations, stage records; no weights) are kept in "
        f"`{relative(records)}`: `python -m experiments.pipeline.report {relative(records)} --name {name}` writes this "
        f"report again from them, and `--compare {relative(records)}` shows these runs beside another pipeline's."
    )
    return write_markdown(assets / REPORT_FILE, parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.pipeline.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="pipeline output directory")
    parser.add_argument("--name", required=True, help="report name: writes REPORT_DIR/<name>/README.md")
    parser.add_argument("--report-dir", default="experiments/reports", help="where reports go")
    compare_help = "other pipeline outputs, scored on the same tracks, whose agent runs join the report"
    parser.add_argument("--compare", nargs="+", default=(), metavar="OUT", help=compare_help)
    args = parser.parse_args(argv)
    print(write_report(args.out, name=args.name, report_dir=args.report_dir, compare=args.compare))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
