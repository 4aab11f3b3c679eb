"""What a pipeline run is asked to do: :class:`PipelineConfig` (every budget and setting), its
:class:`Stage` s and the :func:`plan` that orders them.

>>> config = PipelineConfig("worldmodel/DotTarget-v0", out="/tmp/p", agent_env_frames=2000, seeds=(0, 1))
>>> [stage.name for stage in plan(config)][-2:]
['evaluate/ppo/seed1', 'evaluate/pixels-ppo/seed0']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class PipelineConfig:
    """Budgets and settings of one pipeline run (every stage reads its part)."""

    env_id: str
    """Gymnasium id, e.g. CarRacing-v3."""
    out: str
    """Output directory of the whole run (created; an existing one is resumed)."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend of collection and agent training: gymnasium, or envpool (CarRacing-v3 and Atari in C++, ~5x
    faster). Final evaluations always run on Gymnasium's env, the official one."""
    collect_episodes: int = 200
    """Episodes to collect for the VAE."""
    collect_policy: str = "brownian"
    """Collection policy: random or brownian."""
    collect_max_steps: int | None = None
    """Cap on agent steps per collected episode (None: the env's own limit)."""
    collect_n_envs: int | None = None
    """Collection worker processes (None: one per CPU core)."""
    vae: str | None = None
    """An existing VAE checkpoint for the latent agents; when set, nothing is collected and no VAE is trained
    (e.g. experiments/pretrained/carracing/vae.safetensors, to compare agent recipes over one VAE)."""
    vae_epochs: int = 10
    """VAE training epochs (an upper bound under early stopping)."""
    vae_steps: int | None = None
    """VAE optimiser steps; when set it replaces vae_epochs."""
    vae_batch_size: int | None = None
    """VAE batch size (default: train-vae's, 64 for fp32 on a CPU, 128 on a GPU)."""
    vae_latent_dim: int = 32
    """Latent size z."""
    vae_width_multiplier: float = 1.0
    """Scales the VAE's channels (1.0 = World Models)."""
    algos: tuple[str, ...] = ("ppo",)
    """Algorithms trained on latents (each with every seed)."""
    agent_env_frames: int = 300_000
    """Training budget per agent run, in env frames (agent steps = frames / the mode's frame skip)."""
    continue_from: str | None = None
    """An earlier pipeline's out directory, same recipe at a smaller budget: each agent run starts as a copy of
    that pipeline's finished run and trains on to this budget (a 4M-frame run whose first 1M frames are the 1M
    run). Only for constant learning-rate and clip-range schedules, which a longer budget leaves unchanged."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds of the latent agents."""
    hyperparams: str | None = None
    """rl-zoo-style YAML merged over the shipped presets (all agent runs)."""
    latent_history: int | None = None
    """Latest k latents in each latent observation (default: the preset's)."""
    standardize_latents: bool = False
    """Standardise latents with the VAE's statistics."""
    agent_n_envs: int | None = None
    """Training envs per agent run (None: the preset's)."""
    agent_subproc: bool = False
    """Step each agent run's training envs in worker processes (SubprocVecEnv)."""
    train_eval_freq: int = 10_000
    """Evaluate during training every this many agent steps (the learning curve)."""
    train_eval_episodes: int = 5
    """Episodes per evaluation during training."""
    checkpoint_freq: int = 25_000
    """Write an agent resume checkpoint every this many agent steps."""
    keep_best: bool = False
    """Keep each agent's best training-evaluation policy (``train-agent --keep-best``) and score it on the final
    evaluation's tracks too (``evaluate-best`` stages, ``evaluation-best.json``, a second table in the report)."""
    pixels: bool = True
    """Also train the pixel baseline (rl-zoo recipe) at the same env-frame budget."""
    pixel_algo: str = "ppo"
    """Algorithm of the pixel baseline."""
    pixel_seeds: tuple[int, ...] = (0,)
    """Training seeds of the pixel baseline."""
    finetune_seeds: tuple[int, ...] = ()
    """Training seeds of agents whose policy fine-tunes a copy of the VAE encoder (``--encoder finetune``)."""
    aux_recon_weight: float = 0.0
    """Weight of the VAE loss kept as an auxiliary term in the fine-tuned-encoder runs (0: off)."""
    eval_episodes: int = 100
    """Final evaluation episodes (tracks) per agent run."""
    eval_seed: int = 1_000_000
    """Seed of the first evaluation episode: every run is evaluated on the same tracks."""
    eval_n_envs: int = 1
    """Envs per final evaluation, in worker processes when more than 1 (the tracks depend on it)."""
    video: bool = True
    """Record the first evaluation episode of each mode's first seed (H.264 MP4)."""
    random_baseline: bool = True
    """Also score a uniform-random policy on the evaluation tracks (once)."""
    report_name: str | None = None
    """Write the report REPORT_DIR/<name>/README.md at the end (None: no report stage)."""
    compare_with: tuple[str, ...] = ()
    """Other pipeline outputs (or reports' ``records`` folders), scored on the same tracks, whose agent runs the
    report shows beside this one's; one not there when the report stage runs is named in the report as missing."""
    report_dir: str = "experiments/reports"
    """Where the report and its PNGs go."""
    device: str = "auto"
    """Device for the VAE and the agents: auto, cpu, cuda."""
    isolate: bool = True
    """Run each stage in its own process (its peak memory is then its own)."""
    jobs: int = 1
    """Agent trainings and evaluations run at once, each in its own process (a run's evaluations start once its
    training is done, beside the trainings still under way): for many-core machines, and for
    off-policy agents even on 2 cores (TQC's gradient steps run on one torch thread: three seeds at once trained
    2.2x as many env frames/s as one)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        for name in ("algos", "seeds", "pixel_seeds", "finetune_seeds", "compare_with"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.agent_env_frames < 1 or self.eval_episodes < 1:
            raise ValueError(
                f"need agent_env_frames >= 1 and eval_episodes >= 1, got {self.agent_env_frames} and "
                f"{self.eval_episodes}"
            )
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one training seed")
        if self.jobs < 1 or (self.jobs > 1 and not self.isolate):
            raise ValueError(f"jobs must be >= 1, and 1 when isolate is off; got jobs={self.jobs}")

    @property
    def data_dir(self) -> Path:
        return Path(self.out) / "data"

    @property
    def vae_dir(self) -> Path:
        return Path(self.out) / "vae"

    @property
    def vae_checkpoint(self) -> Path:
        """The VAE the latent agents read: ``vae``, or the best checkpoint of the pipeline's own VAE run."""
        return Path(self.vae) if self.vae else self.vae_dir / "best.safetensors"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Stage:
    """One step of the plan: ``kind`` is collect, train-vae, train-agent, evaluate or report."""

    name: str
    kind: str
    algo: str | None = None
    seed: int | None = None
    pixels: bool = False
    first: bool = False
    """The first run of its mode (records the video and the random baseline)."""
    finetune: bool = False
    """A latent agent whose policy fine-tunes a copy of the VAE encoder."""
    policy: str = "final"
    """The policy an evaluate stage scores: ``final``, or ``best`` (the best training evaluation's)."""

    @property
    def mode(self) -> str:
        """``<algo>``, ``pixels-<algo>`` or ``finetune-<algo>``."""
        return f"pixels-{self.algo}" if self.pixels else f"finetune-{self.algo}" if self.finetune else str(self.algo)

    def run_dir(self, config: PipelineConfig) -> Path:
        """The agent run directory of a train-agent or evaluate stage."""
        return Path(config.out) / "agents" / f"{self.mode}__seed{self.seed}"


def plan(config: PipelineConfig) -> list[Stage]:
    """The stages ``config`` asks for, in order."""
    runs = [Stage("", "train-agent", algo, seed) for algo in config.algos for seed in config.seeds]
    runs += [Stage("", "train-agent", config.algos[0], seed, finetune=True) for seed in config.finetune_seeds]
    if config.pixels:
        runs += [Stage("", "train-agent", config.pixel_algo, seed, pixels=True) for seed in config.pixel_seeds]
    stages = [] if config.vae else [Stage("collect", "collect"), Stage("train-vae", "train-vae")]
    stages += [dataclasses.replace(run, name=f"train-agent/{run.mode}/seed{run.seed}") for run in runs]
    modes = [run.mode for run in runs]
    for i, run in enumerate(runs):
        first = modes.index(run.mode) == i
        name = f"evaluate/{run.mode}/seed{run.seed}"
        stages.append(dataclasses.replace(run, name=name, kind="evaluate", first=first))
    if config.keep_best:
        stages += [
            dataclasses.replace(run, name=f"evaluate-best/{run.mode}/seed{run.seed}", kind="evaluate", policy="best")
            for run in runs
        ]
    if config.report_name:
        stages.append(Stage("report", "report"))
    return stages
