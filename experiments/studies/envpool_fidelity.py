"""``python -m experiments.studies.envpool_fidelity``: how far EnvPool's CarRacing-v3 is from Gymnasium's, measured.

Writes the generated part of ``experiments/reports/envpool/README.md`` (prose written by hand
around it is kept) and its PNGs from these stages, each skipped when its output exists, so an
interrupted run resumes:

1. the same scripted policy (Brownian, the same seeds) collects full episodes on both
   backends: reward per step, episode length and return distributions;
2. a VAE trained on each backend's frames (same budget), each scored on held-out episodes of
   both backends' frames, plus the shipped VAE (trained on Gymnasium frames);
3. agents given with ``--agent RUN_DIR``: evaluated on the same 100 Gymnasium tracks the
   reports use (seeds from 1,000,000) and on 100 EnvPool tracks, side by side.

The same car state cannot be set on both backends (EnvPool exposes no physics state and
draws its tracks from its own generator), so frames are compared by distribution, not pixel
by pixel.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from experiments.pipeline.markdown import mean_ci, write_markdown
from experiments.pipeline.report import REPORT_FILE
from experiments.studies.compare_arms import reconstruction_mse

BACKENDS = ("gymnasium", "envpool")
COLLECT_SEED = 2_000_000
"""Scripted-policy episodes use seeds from here: no agent trains or is evaluated on them."""
EVAL_SEED = 1_000_000
EVAL_EPISODES = 100
REPORT = Path("experiments/reports/envpool")
"""The report folder: README.md and its PNGs."""
SHIPPED_VAE = Path("experiments/pretrained/carracing/vae.safetensors")


def collect(out: Path, backend: str, episodes: int) -> Path:
    from envs.collect import CollectConfig, collect_rollouts

    data = out / f"data-{backend}"
    config = CollectConfig(
        "CarRacing-v3", out=data, episodes=episodes, policy="brownian", seed=COLLECT_SEED, backend=backend, n_envs=2
    )
    print(collect_rollouts(config).describe(), flush=True)
    return data


def train_vae(out: Path, backend: str, data: Path, epochs: int) -> Path:
    from worldmodel.vae.train import TrainVAEConfig
    from worldmodel.vae.train import train_vae as train

    run = out / f"vae-{backend}"
    if not (run / "summary.json").is_file():
        resume = (run / "resume.safetensors").is_file()
        train(TrainVAEConfig(str(data), out=str(run), epochs=epochs, batch_size=64, resume=resume, progress=False))
    return run / "best.safetensors"


def held_out_frames(data: Path) -> np.ndarray:
    """The held-out episodes' frames of ``data`` as train-vae splits them (10%, seed 0)."""
    from worldmodel.data import FrameDataset

    dataset = FrameDataset.open(data)
    _train, val = dataset.split_by_episode(0.1, seed=0)
    return dataset.frames(val)


def scripted_stats(data: Path) -> dict[str, Any]:
    from worldmodel.data import FrameDataset

    dataset = FrameDataset.open(data)
    episodes = [dataset.episode(i) for i in range(dataset.num_episodes)]
    rewards = np.concatenate([e.rewards for e in episodes])
    return {
        "episodes": len(episodes),
        "steps": len(rewards),
        "rewards": rewards,
        "lengths": np.array([len(e.rewards) for e in episodes]),
        "returns": np.array([float(e.rewards.sum()) for e in episodes]),
        "terminated": int(sum(bool(e.terminated[-1]) for e in episodes)),
    }


def evaluate(run_dir: Path, backend: str) -> dict[str, Any]:
    from agents.evaluate import EvaluateConfig, evaluate_agent

    path = run_dir / f"evaluation-{backend}.json"
    if path.is_file():
        return json.loads(path.read_text())
    config = EvaluateConfig(str(run_dir), episodes=EVAL_EPISODES, seed=EVAL_SEED, backend=backend, out=str(path))
    return evaluate_agent(config)


def scripted_section(stats: dict[str, dict[str, Any]], figure: str) -> str:
    rows = []
    for backend, s in stats.items():
        r = s["rewards"]
        rows.append(
            f"| {backend} | {s['episodes']} | {s['steps']} | {r.mean():.4f} | {100 * (r > 0).mean():.1f}% | "
            f"{r[r > 0].mean() if (r > 0).any() else float('nan'):.2f} | {mean_ci(s['lengths'], 2)} | "
            f"{s['terminated']} | {mean_ci(s['returns'], 2)} |"
        )
    return "\n".join(
        [
            "## The same scripted policy on both backends",
            "",
            f"Brownian actions (the collection policy, the same seeds from {COLLECT_SEED:,}), full episodes after "
            "the 50 zoom-in frames. A positive reward is a newly visited tile (1000/N) minus 0.1.",
            "",
            "| backend | episodes | steps | reward per step | steps with a new tile | reward on those | "
            "episode length (95% CI) | terminated | return (95% CI) |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"![reward and return distributions]({figure})",
            "",
        ]
    )


def plot_scripted(stats: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for backend, s in stats.items():
        axes[0].hist(s["rewards"], bins=60, alpha=0.5, label=backend, log=True)
        axes[1].hist(s["returns"], bins=15, alpha=0.5, label=backend)
    axes[0].set(title="reward per step (log count)", xlabel="reward")
    axes[1].set(title="episode return, Brownian policy", xlabel="return")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def vae_section(vaes: dict[str, Path], held_out: dict[str, np.ndarray]) -> str:
    from worldmodel.vae.checkpoint import load_vae

    rows = []
    for label, path in vaes.items():
        ckpt = load_vae(path)
        vae = ckpt.vae.eval()
        errors = [reconstruction_mse(vae, held_out[b], ckpt.frame_spec) for b in BACKENDS]
        rows.append(f"| {label} | " + " | ".join(f"{e:.5f}" for e in errors) + f" | {errors[1] / errors[0]:.2f} |")
    return "\n".join(
        [
            "## A VAE trained on one backend's frames, scored on the other's",
            "",
            "Mean squared error per pixel (frames in [0, 1]) of decoding the posterior mean, on the held-out "
            f"episodes (10%, the train-vae split) of each backend's scripted-policy data "
            f"({len(held_out['gymnasium'])} Gymnasium and {len(held_out['envpool'])} EnvPool frames).",
            "",
            "| VAE | Gymnasium frames | EnvPool frames | EnvPool / Gymnasium |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def agents_section(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = []
    for run, by_backend in results.items():
        cells = [mean_ci(r["returns"]) for r in by_backend.values()]
        gap = np.mean(by_backend["envpool"]["returns"]) - np.mean(by_backend["gymnasium"]["returns"])
        trained = by_backend["gymnasium"].get("trained_on_backend", "gymnasium")
        rows.append(f"| `{run}` | {trained} | " + " | ".join(cells) + f" | {gap:+.1f} |")
    return "\n".join(
        [
            "## Agents on both backends",
            "",
            f"Deterministic actions, {EVAL_EPISODES} episodes each: Gymnasium's tracks from seed {EVAL_SEED:,} (the "
            "reports' tracks) and EnvPool's tracks from the same seeds (other tracks: its generator differs). "
            "Mean with 95% CI.",
            "",
            "| agent | trained on | Gymnasium CarRacing-v3 | EnvPool CarRacing-v3 | EnvPool - Gymnasium |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.studies.envpool_fidelity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("runs/envpool-fidelity"), help="working directory")
    parser.add_argument("--episodes", type=int, default=20, help="scripted-policy episodes per backend")
    parser.add_argument("--vae-epochs", type=int, default=5, help="epochs of each backend's VAE")
    parser.add_argument("--agent", nargs="*", default=[], type=Path, help="agent run directories to score on both")
    args = parser.parse_args(argv)
    data = {b: collect(args.out, b, args.episodes) for b in BACKENDS}
    stats = {b: scripted_stats(data[b]) for b in BACKENDS}
    plot_scripted(stats, REPORT / "scripted.png")
    vaes = {f"trained on {b} frames ({args.vae_epochs} epochs)": train_vae(args.out, b, data[b], args.vae_epochs)
            for b in BACKENDS}  # fmt: skip
    vaes["shipped VAE (`experiments/pretrained/carracing`, Gymnasium frames)"] = SHIPPED_VAE
    held_out = {b: held_out_frames(data[b]) for b in BACKENDS}
    results = {str(run): {b: evaluate(run, b) for b in BACKENDS} for run in args.agent}
    sections = [
        "# EnvPool's CarRacing-v3 against Gymnasium's: fidelity",
        "Made by `python -m experiments.studies.envpool_fidelity "
        f"--episodes {args.episodes} --vae-epochs {args.vae_epochs}"
        + "".join(f" --agent {run}" for run in args.agent)
        + "`. Speed: the `envpool` section of [the benchmarks](../benchmarks/README.md).",
        scripted_section(stats, "scripted.png"),
        vae_section(vaes, held_out),
    ]
    if results:
        sections.append(agents_section(results))
    print(f"wrote {write_markdown(REPORT / REPORT_FILE, sections)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
