"""Compare agents made in different ways.

``python -m experiments.studies.compare_arms --name NAME --arm LABEL=GLOB ...``

An *arm* is a way of making an agent (a one-shot VAE, iterative rounds, a fine-tuned
encoder), given as a label and a glob of agent run directories (``<mode>__seed<k>``), one
per seed. The report holds, per arm, the returns (mean ± std over the evaluation episodes
per seed, mean and 95% confidence interval across seeds), the training cost (env frames,
wall-clock, env frames/s) and the learning curves; with ``--iterate``, a table per
iterative chain of each round's data, VAE error before and after the refit on every
dataset's held-out episodes, and agent; and, with ``--probe-data``, every arm's VAE error
on held-out frames of that dataset (agent-collected frames, for issue 8): the frozen arms'
VAEs as they are, the fine-tuned arms' encoders (taken out of the policy) with their
decoders; with both, how far each refit moved the latent code a policy reads
(:func:`latent_shift`), which decides whether a round's agent could start from the last.

Arms compare only at equal budgets: the report says where their env frames differ.

>>> parse_arm("one-shot=runs/a/*/agents/ppo__seed*")
Arm(label='one-shot', pattern='runs/a/*/agents/ppo__seed*')
"""

from __future__ import annotations

import argparse
import glob
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.pipeline.iterate import ITERATE_FILE, STAGES_FILE
from experiments.pipeline.markdown import cell, write_markdown
from experiments.pipeline.records import EVALUATION_FILE, read_json
from experiments.pipeline.report import (
    REPORT_FILE,
    AgentRun,
    plot_learning_curves,
    read_run,
    returns_table,
    same_budget,
)


@dataclass(frozen=True)
class Arm:
    """One way of making agents: a label and a glob of their run directories (one per seed)."""

    label: str
    pattern: str

    def runs(self, evaluation_file: str = EVALUATION_FILE) -> list[AgentRun]:
        """The arm's finished runs, by seed, with the evaluations in their ``evaluation_file``."""
        dirs = sorted(Path(p) for p in glob.glob(self.pattern))
        runs = [run for d in dirs if (run := read_run(d, self.label, evaluation_file)) is not None]
        return sorted(runs, key=lambda run: run.seed)


def parse_arm(text: str) -> Arm:
    """``LABEL=GLOB`` as an :class:`Arm`."""
    label, sep, pattern = text.partition("=")
    if not sep or not label.strip() or not pattern.strip():
        raise ValueError(f"--arm takes LABEL=GLOB (e.g. 'one-shot=runs/x/agents/ppo__seed*'), got {text!r}")
    return Arm(label.strip(), pattern.strip())


def cost_table(runs: list[AgentRun]) -> str:
    """Per arm: seeds, agent env frames, training wall-clock and env frames/s (means over seeds)."""
    lines = [
        "| arm | seeds | agent env frames | agent steps | training wall-clock | env frames/s |",
        "|---|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(run.label for run in runs):
        arm = [run for run in runs if run.label == label]
        frames = [run.summary["env_frames"] for run in arm]
        walls = [run.summary["elapsed_s"] for run in arm]
        lines.append(
            f"| {label} | {', '.join(str(r.seed) for r in arm)} | {cell(int(np.mean(frames)))} "
            f"| {cell(int(np.mean([r.summary['agent_steps'] for r in arm])))} | {np.mean(walls) / 60:.1f} min "
            f"| {np.sum(frames) / np.sum(walls):.1f} |"
        )
    return "\n".join(lines)


def _vae_summary(round_dir: Path) -> dict[str, Any] | None:
    return read_json(round_dir / "vae" / "summary.json")


def _data_frames(round_dir: Path) -> int | None:
    manifest = read_json(round_dir / "data" / "manifest.json")
    return None if manifest is None else int(manifest["num_steps"])


def chain_config(chain: Path) -> dict[str, Any]:
    """The ``IterateConfig`` fields a `worldmodel iterate` output directory was made with."""
    config = read_json(chain / ITERATE_FILE)
    if config is None:
        raise FileNotFoundError(f"{chain / ITERATE_FILE} is missing: {chain} is not a `worldmodel iterate` output")
    return config["config"]


def iterate_table(chain: Path, evaluation_file: str = EVALUATION_FILE) -> str:
    """Round by round: data collected, the VAE's held-out error per dataset, the agent, cumulative frames.

    Data counts the steps stored (a collector's skipped start frames, e.g. CarRacing's zoom, are not in it).
    """
    cfg = chain_config(chain)
    stages = read_json(chain / STAGES_FILE) or {}
    lines = [
        "| round | data (steps stored) | VAE held-out MSE per pixel, per dataset: before refit → after "
        "| agent return | agent env frames | cumulative: data steps + agent env frames "
        "| wall-clock: collect + VAE + agent |",
        "|---|---|---|---|---|---|---|",
    ]
    total = 0
    for r in range(cfg["rounds"]):
        round_dir = chain / f"round{r}"
        frames = _data_frames(round_dir)
        vae = _vae_summary(round_dir)
        agent = read_run(round_dir / "agents" / f"{cfg['algo']}__seed{cfg['seed']}", None, evaluation_file)
        if frames is None and vae is None and agent is None:
            break
        total += (frames or 0) + (agent.summary["env_frames"] if agent else 0)
        errors = []
        for k, d in enumerate((vae or {}).get("datasets", [])):
            before = d.get("init_val_mse_per_pixel")
            errors.append(
                f"round {k} data: {cell(before, 5) + ' → ' if before is not None else ''}"
                f"{cell(d.get('val_mse_per_pixel'), 5)}"
            )
        if vae is not None and not errors:
            errors.append(f"round {r} data: {cell(vae['val_mse_per_pixel'], 5)}")
        ev = agent.evaluation if agent else None
        ret = f"{ev['mean_return']:.1f}" if ev else "–"
        walls = [
            stages.get(f"round{r}/collect", {}).get("wall_s"),
            vae["wall_s"] if vae else None,
            agent.summary["elapsed_s"] if agent else None,
        ]
        lines.append(
            f"| {r} | {cell(frames)} | {'; '.join(errors) or '–'} "
            f"| {ret} "
            f"| {cell(agent.summary['env_frames']) if agent else '–'} | {cell(total)} "
            f"| {' + '.join(cell(w / 60) + ' min' if w is not None else '–' for w in walls)} |"
        )
    return "\n".join(lines)


def arm_vae(run: AgentRun) -> Any:
    """The VAE an agent sees through: its bundle's checkpoint, or for ``finetune-`` runs the policy's trained copy."""
    from agents.bundle import VAE_FILE, load_bundle
    from agents.encoder_extractor import find_extractor
    from worldmodel.vae.checkpoint import load_vae

    if run.finetune:
        bundle = load_bundle(run.run_dir, device="cpu")
        vae = find_extractor(bundle.model.policy).vae
        bundle.venv.close()
    else:
        vae = load_vae(run.run_dir / VAE_FILE).vae
    return vae.eval()


def reconstruction_mse(vae: Any, frames: np.ndarray, spec: Any, batch: int = 256) -> float:
    """Mean squared error per pixel (in [0, 1] units) of decoding the posterior means of uint8 ``frames``."""
    import torch

    from worldmodel.frames import frames_to_tensor

    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            x = frames_to_tensor(frames[start : start + batch], spec)
            mu, _ = vae.encode(x)
            total += float(((vae.decode(mu) - x) ** 2).mean(dim=(1, 2, 3)).sum())
    return total / len(frames)


def load_probe(data_dir: str) -> tuple[Any, np.ndarray]:
    """The probe dataset and all its frames ``(N, h, w, c)`` uint8."""
    from worldmodel.data import FrameDataset

    dataset = FrameDataset.open(data_dir)
    return dataset, dataset.frames(np.arange(len(dataset)))


def probe_table(runs: list[AgentRun], data_dir: str, probe: tuple[Any, np.ndarray]) -> str:
    """Every run's reconstruction error on all frames of the ``probe`` dataset (frames none of the VAEs trained on)."""
    from agents.bundle import VAE_FILE
    from worldmodel.data import check_frame_spec
    from worldmodel.vae.checkpoint import file_sha256, read_frame_spec

    dataset, frames = probe
    lines = ["| arm | seed | VAE | MSE per pixel |", "|---|---|---|---|"]
    per_arm: dict[str, list[float]] = {}
    frozen: dict[str, float] = {}  # by checkpoint hash: seeds that share one frozen VAE are measured once
    for run in runs:
        spec = read_frame_spec(run.run_dir / VAE_FILE)
        check_frame_spec(dataset.frame_spec, spec, consumer=f"the VAE of {run.run_dir}")
        if run.finetune:
            mse = reconstruction_mse(arm_vae(run), frames, spec)
        else:
            key = file_sha256(run.run_dir / VAE_FILE)
            if key not in frozen:
                frozen[key] = reconstruction_mse(arm_vae(run), frames, spec)
            mse = frozen[key]
        per_arm.setdefault(run.label, []).append(mse)
        which = "policy's fine-tuned encoder + the VAE's decoder" if run.finetune else "frozen VAE"
        lines.append(f"| {run.label} | {run.seed} | {which} | {mse:.5f} |")
    for label, values in per_arm.items():
        lines.append(f"| **{label}** | all | | **{np.mean(values):.5f}** |")
    return f"{len(frames):,} frames, {dataset.num_episodes} episodes of `{data_dir}`.\n\n" + "\n".join(lines)


def posterior_means(vae: Any, frames: np.ndarray, spec: Any, batch: int = 256) -> np.ndarray:
    """Posterior means ``(N, z)`` float64 of uint8 ``frames`` ``(N, h, w, c)``."""
    import torch

    from worldmodel.frames import frames_to_tensor

    with torch.inference_mode():
        means = [vae.encode(frames_to_tensor(frames[i : i + batch], spec))[0] for i in range(0, len(frames), batch)]
    return torch.cat(means).double().numpy()


@dataclass(frozen=True)
class LatentShift:
    """How far a refit moved the code a policy reads, over the old VAE's active dimensions, on some frames."""

    dims: int
    """The old VAE's active dimensions (those its latent statistics mark active)."""
    shift: float
    """RMS change of each mean, in units of that dimension's std over the frames under the old VAE:
    0 means a policy trained on the old latents could be kept as it is."""
    affine_r2: float
    """R^2 (mean over the dimensions) of the best affine map from the new means back to the old ones:
    near 1 means the old code is still there, linearly (a policy's first layer could be refit)."""


def latent_shift(old: Any, new: Any, frames: np.ndarray) -> LatentShift | None:
    """The :class:`LatentShift` from checkpoint ``old`` to ``new`` (same latent size) on ``frames``; None when
    the old VAE marks no dimension active.

    >>> import torch
    >>> from worldmodel.vae.checkpoint import LatentStats, VAECheckpoint
    >>> from worldmodel.frames import FrameSpec
    >>> from worldmodel.vae.model import ConvVAE, VAEConfig
    >>> torch.manual_seed(0) and None
    >>> vae = ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25))
    >>> stats = LatentStats(np.zeros(4), np.ones(4), np.ones(4, bool))
    >>> old = VAECheckpoint(vae, FrameSpec(16, 16), latent_stats=stats)
    >>> frames = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    >>> same = latent_shift(old, old, frames)
    >>> same.dims, same.shift, round(same.affine_r2, 6)
    (4, 0.0, 1.0)
    """
    from worldmodel.vae.encoder import MIN_STD

    stats = old.latent_stats
    if stats is None:
        raise ValueError(
            "latent_shift needs the old checkpoint's latent statistics: use a VAE written by `worldmodel train-vae`"
        )
    sizes = (old.vae.config.latent_dim, new.vae.config.latent_dim)
    if sizes[0] != sizes[1]:
        raise ValueError(f"latent_shift compares VAEs of one latent size (a refit), got {sizes[0]} and {sizes[1]}")
    active = np.flatnonzero(stats.active)
    if active.size == 0:
        return None
    before = posterior_means(old.vae.eval(), frames, old.frame_spec)[:, active]
    after = posterior_means(new.vae.eval(), frames, new.frame_spec)
    spread = np.maximum(before.std(axis=0), MIN_STD)
    shift = float(np.sqrt(np.mean(((after[:, active] - before) / spread) ** 2)))
    design = np.column_stack([after, np.ones(len(after))])
    coef, *_ = np.linalg.lstsq(design, before, rcond=None)
    residual = ((before - design @ coef) ** 2).sum(axis=0)
    total = np.maximum(((before - before.mean(axis=0)) ** 2).sum(axis=0), MIN_STD)
    return LatentShift(int(active.size), shift, float(np.mean(1 - residual / total)))


def latent_shift_table(chains: Sequence[str], data_dir: str, probe: tuple[Any, np.ndarray]) -> str:
    """Per chain and round r > 0: how far round r's refit VAE moved round r-1's latents, on the probe frames."""
    from worldmodel.data import check_frame_spec
    from worldmodel.vae.checkpoint import load_vae

    dataset, frames = probe
    lines = [
        "| chain | round | active dims: before → after | latent shift (std units) | affine R² new → old |",
        "|---|---|---|---|---|",
    ]
    for chain in map(Path, chains):
        for r in range(1, chain_config(chain)["rounds"]):
            paths = [chain / f"round{k}" / "vae" / "best.safetensors" for k in (r - 1, r)]
            if not paths[1].is_file():
                break  # the chain has not refit this round's VAE yet
            old, new = (load_vae(path, device="cpu") for path in paths)
            for path, checkpoint in zip(paths, (old, new), strict=True):
                check_frame_spec(dataset.frame_spec, checkpoint.frame_spec, consumer=f"the VAE {path}")
            shift = latent_shift(old, new, frames)
            new_dims = int(new.latent_stats.active.sum()) if new.latent_stats is not None else "–"
            cells = f"{shift.shift:.2f} | {shift.affine_r2:.3f}" if shift else "– | –"
            lines.append(f"| `{chain}` | {r} | {shift.dims if shift else 0} → {new_dims} | {cells} |")
    return f"On the {len(frames):,} frames of `{data_dir}`.\n\n" + "\n".join(lines)


def budget_statement(runs: list[AgentRun]) -> str:
    """Whether the arms trained their agents for the same env frames (within 1%)."""
    frames = {run.label: int(np.mean([r.summary["env_frames"] for r in runs if r.label == run.label])) for run in runs}
    low, high = min(frames.values()), max(frames.values())
    if same_budget(low, high):
        return f"Every arm's agents trained for the same budget: {high:,} env frames each (within 1%)."
    listed = ", ".join(f"{label}: {n:,}" for label, n in frames.items())
    return f"**The arms' agent budgets differ** ({listed}): compare them with care."


def write_report(
    arms: list[Arm],
    *,
    name: str,
    iterate: Sequence[str] = (),
    probe_data: str | None = None,
    evaluation_file: str = EVALUATION_FILE,
    report_dir: str | Path = "experiments/reports",
    command: str = "",
) -> Path:
    """Write the report ``report_dir/<name>/README.md`` (beside its PNGs) comparing ``arms``; returns its path.
    Prose written by hand outside the report's generated part is kept (:func:`write_markdown`).

    Returns come from each run's ``evaluation_file`` (another name than ``evaluation.json`` for
    evaluations on other tracks, e.g. tracks no data collection touched).
    """
    runs = [run for arm in arms for run in arm.runs(evaluation_file)]
    missing = [arm.label for arm in arms if not any(run.label == arm.label for run in runs)]
    if missing:
        raise FileNotFoundError(f"no finished agent run matches the arm(s) {missing}: check their globs")
    report_dir = Path(report_dir)
    assets = report_dir / name
    assets.mkdir(parents=True, exist_ok=True)
    table, _ = returns_table(runs)
    evals = {(ev["episodes"], ev["seed"]) for run in runs if (ev := run.evaluation)}
    parts = [
        f"# Arms compared ({name})",
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `{command or 'python -m experiments.studies.compare_arms'}`.",
        "## Arms",
        "\n".join(f"- **{arm.label}**: `{arm.pattern}`" for arm in arms),
        "## Returns",
        f"Final evaluation (each run's `{evaluation_file}`), deterministic actions; "
        + (
            f"every run on the same {next(iter(evals))[0]} tracks (episode seeds from {next(iter(evals))[1]})."
            if len(evals) == 1
            else f"**the runs were evaluated on different track sets** ({sorted(evals)})."
        )
        + " "
        + budget_statement(runs),
        table,
        "## Cost",
        "Agent training only, mean over seeds; env frames/s is the arm's total env frames over its total training "
        "wall-clock. The extra stages of iterative training (collection with the agent, VAE refit) are in the "
        "per-chain tables below.",
        cost_table(runs),
    ]
    for chain in iterate:
        parts += [f"## Iterative chain `{chain}`", iterate_table(Path(chain), evaluation_file)]
    if probe_data:
        probe = load_probe(probe_data)
        parts += [
            "## VAE error on agent-collected frames",
            "Reconstruction from the posterior mean, every frame of a dataset that no VAE trained on.",
            probe_table(runs, probe_data, probe),
        ]
        if iterate:
            parts += [
                "## How far each refit moved the latent code",
                "What a policy trained on round r-1's latents would see under round r's VAE, over round r-1's "
                "active dimensions: the RMS change of each posterior mean in units of its std, and the R² of the "
                "best affine map from the new means back to the old (1: the old code is still there, linearly).",
                latent_shift_table(iterate, probe_data, probe),
            ]
    if plot_learning_curves(runs, assets / "learning_curves.png"):
        parts += [
            "## Learning curves",
            "Evaluation return during training against env frames and against training wall-clock.",
            "![learning curves](learning_curves.png)",
        ]
    return write_markdown(assets / REPORT_FILE, parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.studies.compare_arms", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--name", required=True, help="report name: writes REPORT_DIR/<name>/README.md")
    parser.add_argument("--arm", action="append", required=True, help="LABEL=GLOB of agent run dirs; repeat per arm")
    parser.add_argument("--iterate", nargs="*", default=[], help="`worldmodel iterate` output dirs to tabulate")
    parser.add_argument("--probe-data", help="dataset of frames no VAE trained on: every arm's VAE error on it")
    parser.add_argument("--evaluation", default=EVALUATION_FILE, help="evaluation JSON file name in each run dir")
    parser.add_argument("--report-dir", default="experiments/reports", help="where reports go")
    args = parser.parse_args(argv)
    try:
        arms = [parse_arm(text) for text in args.arm]
        path = write_report(
            arms,
            name=args.name,
            iterate=args.iterate,
            probe_data=args.probe_data,
            evaluation_file=args.evaluation,
            report_dir=args.report_dir,
            command="python -m experiments.studies.compare_arms "
            + shlex.join(argv if argv is not None else sys.argv[1:]),
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"compare_arms: error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
