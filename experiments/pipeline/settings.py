"""The settings of the pipeline's stages, one frozen dataclass each: the sections of
:class:`~experiments.pipeline.config.PipelineConfig` (and of :class:`~experiments.pipeline.iterate.IterateConfig`),
and the flat names the sections' fields had before there were sections.

>>> RunSettings(algos=["ppo", "sac"], seeds=[0]).algos
('ppo', 'sac')
>>> AgentSettings(env_frames=0)
Traceback (most recent call last):
ValueError: need env_frames >= 1 (the agent training budget), got 0
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from worldmodel.common.configargs import add_config_arguments, config_from_args


def _as_tuples(settings: object, *names: str) -> None:
    """Store the fields ``names`` of the frozen ``settings`` as tuples (JSON gives lists)."""
    for name in names:
        object.__setattr__(settings, name, tuple(getattr(settings, name)))


@dataclass(frozen=True)
class CollectSettings:
    """The collect stage (``worldmodel collect``): the episodes the VAE trains on."""

    episodes: int = 200
    """Episodes to collect for the VAE."""
    policy: str = "brownian"
    """Collection policy: random or brownian."""
    max_steps: int | None = None
    """Cap on agent steps per collected episode (default: the env's own limit)."""
    n_envs: int | None = None
    """Collection worker processes (default: one per CPU core)."""


@dataclass(frozen=True)
class VaeSettings:
    """The train-vae stage (``worldmodel train-vae``), or an existing VAE in its place."""

    pretrained: str | None = None
    """An existing VAE checkpoint for the latent agents; when set, nothing is collected and no VAE is trained
    (e.g. experiments/pretrained/carracing/vae.safetensors, to compare agent recipes over one VAE)."""
    epochs: int = 10
    """VAE training epochs (an upper bound under early stopping)."""
    steps: int | None = None
    """VAE optimiser steps; when set it replaces epochs."""
    batch_size: int | None = None
    """VAE batch size (default: train-vae's, 64 for fp32 on a CPU, 128 on a GPU)."""
    latent_dim: int = 32
    """Latent size z."""
    width_multiplier: float = 1.0
    """Scales the VAE's channels (1.0 = World Models)."""
    kl_tolerance: float = 0.0
    """Free nats of KL per frame (World Models: 0.5 per latent dimension, 16 for z = 32)."""
    motion_weight: float = 0.0
    """Extra reconstruction weight of pixels that changed since the previous frame (small moving objects)."""


@dataclass(frozen=True)
class AgentSettings:
    """How every agent run trains (``worldmodel train-agent``)."""

    env_frames: int = 300_000
    """Training budget per agent run, in env frames (agent steps = frames / the mode's frame skip)."""
    pixel_env_frames: int | None = None
    """The pixel baseline's budget in env frames (default: env_frames); e.g. more than the latent agents', whose
    budget leaves out the frames their VAE trained on."""
    hyperparams: str | None = None
    """rl-zoo-style YAML merged over the shipped presets (all agent runs)."""
    latent_history: int | None = None
    """Latest k latents in each latent observation (default: the preset's)."""
    standardize_latents: bool = False
    """Standardise latents with the VAE's statistics."""
    n_envs: int | None = None
    """Training envs per agent run (default: the preset's)."""
    subproc: bool = False
    """Step each agent run's training envs in worker processes (SubprocVecEnv)."""
    eval_freq: int = 10_000
    """Evaluate during training every this many agent steps (the learning curve)."""
    eval_episodes: int = 5
    """Episodes per evaluation during training."""
    checkpoint_freq: int = 25_000
    """Write an agent resume checkpoint every this many agent steps."""

    def __post_init__(self) -> None:
        for name in ("env_frames", "pixel_env_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"need {name} >= 1 (the agent training budget), got {value}")


@dataclass(frozen=True)
class RunSettings:
    """Which agent runs the pipeline trains: every algorithm with every seed on latents, the pixel baseline, agents
    whose policy fine-tunes the encoder; and where they start."""

    algos: tuple[str, ...] = ("ppo",)
    """Algorithms trained on latents (each with every seed)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds of the latent agents."""
    continue_from: str | None = None
    """An earlier pipeline's out directory, same recipe at a smaller budget: each agent run starts as a copy of
    that pipeline's finished run and trains on to this budget (a 4M-frame run whose first 1M frames are the 1M
    run). Only for constant learning-rate and clip-range schedules, which a longer budget leaves unchanged."""
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

    def __post_init__(self) -> None:
        _as_tuples(self, "algos", "seeds", "pixel_seeds", "finetune_seeds")
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one training seed")


@dataclass(frozen=True)
class EvaluateSettings:
    """The final evaluation of every agent run (``worldmodel evaluate``), always on Gymnasium's env."""

    episodes: int = 100
    """Final evaluation episodes (tracks) per agent run."""
    seed: int = 1_000_000
    """Seed of the first evaluation episode: every run is evaluated on the same tracks."""
    n_envs: int = 1
    """Envs per final evaluation, in worker processes when more than 1 (the tracks depend on it)."""
    video: bool = True
    """Record the first evaluation episode of each mode's first seed (H.264 MP4)."""
    random_baseline: bool = True
    """Also score a uniform-random policy on the evaluation tracks (once)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"need at least 1 evaluation episode, got {self.episodes}")


@dataclass(frozen=True)
class ReportSettings:
    """The report stage (``python -m experiments.pipeline.report``)."""

    name: str | None = None
    """Write the report DIR/<name>/README.md at the end (None: no report stage)."""
    compare_with: tuple[str, ...] = ()
    """Other pipeline outputs (or reports' ``records`` folders), scored on the same tracks, whose agent runs the
    report shows beside this one's; one not there when the report stage runs is named in the report as missing."""
    dir: str = "experiments/reports"
    """Where the report and its PNGs go."""

    def __post_init__(self) -> None:
        _as_tuples(self, "compare_with")


SECTIONS: dict[str, type] = {
    "collect": CollectSettings,
    "vae": VaeSettings,
    "agent": AgentSettings,
    "runs": RunSettings,
    "evaluate": EvaluateSettings,
    "report": ReportSettings,
}
"""The pipeline config's sections: field name -> settings class."""

FLAT_NAMES: dict[str, tuple[str, str]] = {
    "collect_episodes": ("collect", "episodes"),
    "collect_policy": ("collect", "policy"),
    "collect_max_steps": ("collect", "max_steps"),
    "collect_n_envs": ("collect", "n_envs"),
    "vae": ("vae", "pretrained"),
    "vae_epochs": ("vae", "epochs"),
    "vae_steps": ("vae", "steps"),
    "vae_batch_size": ("vae", "batch_size"),
    "vae_latent_dim": ("vae", "latent_dim"),
    "vae_width_multiplier": ("vae", "width_multiplier"),
    "vae_kl_tolerance": ("vae", "kl_tolerance"),
    "vae_motion_weight": ("vae", "motion_weight"),
    "agent_env_frames": ("agent", "env_frames"),
    "pixel_env_frames": ("agent", "pixel_env_frames"),
    "hyperparams": ("agent", "hyperparams"),
    "latent_history": ("agent", "latent_history"),
    "standardize_latents": ("agent", "standardize_latents"),
    "agent_n_envs": ("agent", "n_envs"),
    "agent_subproc": ("agent", "subproc"),
    "train_eval_freq": ("agent", "eval_freq"),
    "train_eval_episodes": ("agent", "eval_episodes"),
    "checkpoint_freq": ("agent", "checkpoint_freq"),
    "algos": ("runs", "algos"),
    "seeds": ("runs", "seeds"),
    "continue_from": ("runs", "continue_from"),
    "keep_best": ("runs", "keep_best"),
    "pixels": ("runs", "pixels"),
    "pixel_algo": ("runs", "pixel_algo"),
    "pixel_seeds": ("runs", "pixel_seeds"),
    "finetune_seeds": ("runs", "finetune_seeds"),
    "aux_recon_weight": ("runs", "aux_recon_weight"),
    "eval_episodes": ("evaluate", "episodes"),
    "eval_seed": ("evaluate", "seed"),
    "eval_n_envs": ("evaluate", "n_envs"),
    "video": ("evaluate", "video"),
    "random_baseline": ("evaluate", "random_baseline"),
    "report_name": ("report", "name"),
    "compare_with": ("report", "compare_with"),
    "report_dir": ("report", "dir"),
}
"""The flat name of each section field: its name in the one-level config that pipelines recorded before the
sections (``pipeline.json`` in the committed reports' records), and its command-line flag (``--agent-env-frames``)."""


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each flat name moved into its section's dict: a config recorded flat, in the nested form.
    Section dicts and other keys are kept (``vae`` is the flat name of ``vae.pretrained`` unless it is a dict).

    >>> nest({"env_id": "E", "agent_env_frames": 10, "vae": None, "agent": {"n_envs": 2}})
    {'env_id': 'E', 'agent': {'n_envs': 2, 'env_frames': 10}, 'vae': {'pretrained': None}}
    """
    flat = {key: value for key, value in values.items() if key in FLAT_NAMES and not isinstance(value, dict)}
    nested = {key: dict(value) if key in SECTIONS else value for key, value in values.items() if key not in flat}
    for key, value in flat.items():
        section, field = FLAT_NAMES[key]
        nested.setdefault(section, {})[field] = value
    return nested


def _flat_names(section: str, flats: Collection[str]) -> dict[str, str]:
    """Field -> flat name of the fields of ``section`` among the flat names ``flats``."""
    return {field: flat for flat, (where, field) in FLAT_NAMES.items() if where == section and flat in flats}


class _FlatParser:
    """Stands for a parser in :func:`add_config_arguments`, adding each field's option under its flat name."""

    def __init__(self, parser: argparse.ArgumentParser, names: dict[str, str]) -> None:
        self.parser, self.names = parser, names

    def add_argument(self, flag: str, *, dest: str, **kwargs: Any) -> argparse.Action:
        flat = self.names[dest]
        return self.parser.add_argument("--" + flat.replace("_", "-"), dest=flat, **kwargs)


def add_flat_arguments(parser: argparse.ArgumentParser, section: str, settings: type, flats: Collection[str]) -> None:
    """Add the fields of ``section`` among ``flats`` to ``parser`` as options named by their flat names, with the
    defaults and help of the settings class ``settings`` (the field ``collect.episodes`` is ``--collect-episodes``).

    >>> parser = argparse.ArgumentParser()
    >>> add_flat_arguments(parser, "vae", VaeSettings, ("vae_epochs", "vae_latent_dim"))
    >>> args = parser.parse_args(["--vae-epochs", "3"])
    >>> args
    Namespace(vae_epochs=3, vae_latent_dim=32)
    >>> settings = settings_from_args("vae", VaeSettings, ("vae_epochs", "vae_latent_dim"), args)
    >>> settings.epochs, settings.latent_dim, settings.motion_weight
    (3, 32, 0.0)
    """
    names = _flat_names(section, flats)
    skip = [f.name for f in dataclasses.fields(settings) if f.name not in names]
    add_config_arguments(_FlatParser(parser, names), settings, skip=skip)  # type: ignore[arg-type]


def settings_from_args(section: str, settings: type, flats: Collection[str], args: argparse.Namespace) -> Any:
    """The ``settings`` of ``section`` from the options :func:`add_flat_arguments` added; other fields default."""
    values = {field: getattr(args, flat) for field, flat in _flat_names(section, flats).items()}
    return config_from_args(settings, argparse.Namespace(**values))
