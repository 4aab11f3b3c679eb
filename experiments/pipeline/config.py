"""What a pipeline run is asked to do: :class:`PipelineConfig` (every budget and setting, in one section per
stage), its :class:`Stage` s and the :func:`plan` that orders them.

>>> config = PipelineConfig("worldmodel/DotTarget-v0", out="/tmp/p", runs=RunSettings(seeds=(0, 1)))
>>> [stage.name for stage in plan(config)][-2:]
['evaluate/ppo/seed1', 'evaluate/pixels-ppo/seed0']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from experiments.pipeline.settings import (
    SECTIONS,
    AgentSettings,
    CollectSettings,
    EvaluateSettings,
    ReportSettings,
    RunSettings,
    VaeSettings,
    nest,
)


@dataclass(frozen=True)
class PipelineConfig:
    """Budgets and settings of one pipeline run: the env, the output, and one section per stage."""

    env_id: str
    """Gymnasium id, e.g. CarRacing-v3."""
    out: str
    """Output directory of the whole run (created; an existing one is resumed)."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend of collection and agent training: gymnasium, or envpool (CarRacing-v3 and Atari in C++, ~5x
    faster). Final evaluations always run on Gymnasium's env, the official one."""
    collect: CollectSettings = dataclasses.field(default_factory=CollectSettings)
    """The collect stage."""
    vae: VaeSettings = dataclasses.field(default_factory=VaeSettings)
    """The train-vae stage, or an existing VAE."""
    agent: AgentSettings = dataclasses.field(default_factory=AgentSettings)
    """How every agent run trains."""
    runs: RunSettings = dataclasses.field(default_factory=RunSettings)
    """Which agent runs there are."""
    evaluate: EvaluateSettings = dataclasses.field(default_factory=EvaluateSettings)
    """The final evaluations."""
    report: ReportSettings = dataclasses.field(default_factory=ReportSettings)
    """The report stage."""
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
        """The VAE the latent agents read: ``vae.pretrained``, or the best checkpoint of the pipeline's own VAE run."""
        return Path(self.vae.pretrained) if self.vae.pretrained else self.vae_dir / "best.safetensors"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PipelineConfig:
        """The config :meth:`to_dict` gave, or one recorded flat before the sections (``pipeline.json`` of older
        runs: ``{"agent_env_frames": ..., "eval_seed": ...}``); fields not recorded take their defaults.

        >>> config = PipelineConfig("E", out="o", runs=RunSettings(seeds=(4,)))
        >>> PipelineConfig.from_dict(config.to_dict()) == config
        True
        >>> PipelineConfig.from_dict({"env_id": "E", "out": "o", "seeds": [4], "eval_seed": 7}).evaluate.seed
        7
        """
        nested = nest(values)
        sections = {name: settings(**nested.pop(name, {})) for name, settings in SECTIONS.items()}
        return cls(**nested, **sections)


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
    settings = config.runs
    runs = [Stage("", "train-agent", algo, seed) for algo in settings.algos for seed in settings.seeds]
    runs += [Stage("", "train-agent", settings.algos[0], seed, finetune=True) for seed in settings.finetune_seeds]
    if settings.pixels:
        runs += [Stage("", "train-agent", settings.pixel_algo, seed, pixels=True) for seed in settings.pixel_seeds]
    stages = [] if config.vae.pretrained else [Stage("collect", "collect"), Stage("train-vae", "train-vae")]
    stages += [dataclasses.replace(run, name=f"train-agent/{run.mode}/seed{run.seed}") for run in runs]
    modes = [run.mode for run in runs]
    for i, run in enumerate(runs):
        first = modes.index(run.mode) == i
        name = f"evaluate/{run.mode}/seed{run.seed}"
        stages.append(dataclasses.replace(run, name=name, kind="evaluate", first=first))
    if settings.keep_best:
        stages += [
            dataclasses.replace(run, name=f"evaluate-best/{run.mode}/seed{run.seed}", kind="evaluate", policy="best")
            for run in runs
        ]
    if config.report.name:
        stages.append(Stage("report", "report"))
    return stages
