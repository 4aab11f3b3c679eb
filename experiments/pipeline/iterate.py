"""Iterative training: ``worldmodel iterate ENV_ID --rounds R --out DIR``.

Round 0 is the plain pipeline: collect with a random/Brownian policy, train the VAE, train
the agent, evaluate it. Each later round ``r``

1. collects ``collect.episodes`` new episodes with round ``r-1``'s agent bundle
   (``worldmodel collect --policy RUN_DIR --policy-noise SIGMA``), so the data covers
   the states a trained agent reaches;
2. refits the VAE: ``worldmodel train-vae`` on every earlier round's data plus the new
   data, ``--init`` from round ``r-1``'s VAE, ``--mix`` giving the new data
   ``new_data_share`` of each epoch and the earlier rounds equal parts of the rest;
3. trains a new agent **from scratch** on the refit VAE's latents, and evaluates it.

What happens to the agent when the VAE changes under it: a fine-tuned VAE moves every
latent dimension a little (encoder included), so a policy trained on the old latents sees
other inputs; rather than warm-starting a policy on a latent space it was not trained
for, each round retrains the agent from scratch at the same env-frame budget. The
cost of the VAE change is measured on the data side: the refit stage records, per
dataset, the previous VAE's held-out error before the refit (``init_val_*``) and after it
(``val_*``), so the new data's error under the old VAE shows how far the agent's states
were from what that VAE had seen. Each round's ``evaluate`` stage records the agent's
return, so rounds compare directly.

Layout::

    OUT/iterate.json                 the config and every command that ran it
    OUT/stages.json                  per stage ("round<r>/<stage>"): status, wall-clock, frames, returns, VAE error
    OUT/round<r>/data/               the round's dataset (round r>0: collected by round r-1's agent)
    OUT/round<r>/vae/                the round's VAE run (round r>0: refit with --init)
    OUT/round<r>/agents/<algo>__seed<k>/   the round's agent, with evaluation.json

The stage machinery (completion checks, isolated stage processes, peak memory) is
:mod:`experiments.pipeline.stages`'s, applied to one :class:`~experiments.pipeline.stages.PipelineConfig`
per round; the collection and refit of rounds after the first run in this process.
A round whose stages are all complete is skipped; an interrupted one resumes its stage.

>>> config = IterateConfig("worldmodel/DotTarget-v0", out="/tmp/it", rounds=2)
>>> [name for name, _ in round_stages(config, 1)]
['round1/collect', 'round1/train-vae', 'round1/train-agent/ppo/seed0', 'round1/evaluate/ppo/seed0']
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from experiments.pipeline.config import PipelineConfig, Stage
from experiments.pipeline.machine import describe_machine, peak_rss_mib
from experiments.pipeline.records import read_stages
from experiments.pipeline.settings import (
    AgentSettings,
    CollectSettings,
    EvaluateSettings,
    RunSettings,
    VaeSettings,
    add_flat_arguments,
    settings_from_args,
)
from experiments.pipeline.stages import (
    check_inputs,
    command_line,
    is_done,
    run_stage,
    stage_command,
    vae_config,
)
from worldmodel.common.atomic import write_json_atomic
from worldmodel.common.configargs import add_config_arguments, config_from_args

COMMAND_HELP = "collect -> train VAE -> train agent, in R resumable rounds"
"""One line for ``worldmodel --help``."""

ITERATE_FILE = "iterate.json"
STAGES_FILE = "stages.json"
ROUND_SEED_STRIDE = 10_000_000
"""Round r > 0 collects episodes with seeds from r * ROUND_SEED_STRIDE: new tracks every round, and never
the evaluation tracks (``evaluate.seed`` onwards), which no VAE may train on."""


@dataclass(frozen=True)
class RoundCollectSettings(CollectSettings):
    """Round 0's collection; each later round collects as many episodes with the previous round's agent."""

    episodes: int = 100
    """Episodes collected per round."""
    policy: str = "brownian"
    """Round 0's collection policy: random or brownian."""


@dataclass(frozen=True)
class RoundEvaluateSettings(EvaluateSettings):
    """The final evaluation of each round's agent: the same tracks every round, no video, no random baseline."""

    episodes: int = 20
    """Final evaluation episodes of each round's agent (the same tracks every round)."""
    video: bool = False
    random_baseline: bool = False


@dataclass(frozen=True)
class IterateConfig:
    """Budgets of an iterative run (each round uses the same budgets and the pipeline's stage settings)."""

    env_id: str
    """Gymnasium id, e.g. CarRacing-v3."""
    out: str
    """Output directory (created; an existing one is resumed round by round)."""
    rounds: int = 3
    """Rounds of collect -> train VAE -> train agent."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend of collection and agent training: gymnasium or envpool; evaluations run on Gymnasium's env."""
    algo: str = "ppo"
    """SB3 algorithm of the agent."""
    seed: int = 0
    """Agent training seed."""
    policy_noise: float = 0.1
    """Rounds > 0: std of Gaussian noise on the agent's Box actions while collecting."""
    epsilon: float = 0.0
    """Rounds > 0: probability of a uniform-random action while collecting (use it for discrete actions)."""
    new_data_share: float = 0.5
    """Rounds > 0: share of the new round's data in each VAE refit epoch (earlier rounds split the rest)."""
    collect: CollectSettings = dataclasses.field(default_factory=RoundCollectSettings)
    """Round 0's collection, and the episodes and caps of every round's."""
    vae: VaeSettings = dataclasses.field(default_factory=VaeSettings)
    """Every round's VAE training (the refit too); never an existing VAE."""
    agent: AgentSettings = dataclasses.field(default_factory=AgentSettings)
    """Every round's agent training."""
    evaluate: EvaluateSettings = dataclasses.field(default_factory=RoundEvaluateSettings)
    """Every round's final evaluation."""
    device: str = "auto"
    """Device for the VAE and the agents: auto, cpu, cuda."""
    isolate: bool = True
    """Run round 0's stages and every agent stage in their own process."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if self.rounds < 1 or not 0.0 < self.new_data_share < 1.0:
            raise ValueError(
                f"need rounds >= 1 and 0 < new_data_share < 1, got {self.rounds} and {self.new_data_share}"
            )
        if self.vae.pretrained is not None:
            raise ValueError(f"iterate trains every round's VAE; leave vae.pretrained unset, got {self.vae.pretrained}")

    def round_dir(self, r: int) -> Path:
        return Path(self.out) / f"round{r}"

    def pipeline(self, r: int) -> PipelineConfig:
        """Round ``r`` as a pipeline config (its collect and train-vae stages are round 0's kind)."""
        return PipelineConfig(
            self.env_id,
            out=str(self.round_dir(r)),
            backend=self.backend,
            collect=self.collect,
            vae=self.vae,
            agent=self.agent,
            runs=RunSettings(algos=(self.algo,), seeds=(self.seed,), pixels=False),
            evaluate=self.evaluate,
            device=self.device,
            isolate=self.isolate,
            progress=self.progress,
        )

    def agent_dir(self, r: int) -> Path:
        return Stage("", "train-agent", self.algo, self.seed).run_dir(self.pipeline(r))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def round_stages(config: IterateConfig, r: int) -> list[tuple[str, Stage]]:
    """Round ``r``'s stages, named ``round<r>/<stage>``, in order."""
    mode = f"{config.algo}/seed{config.seed}"
    stages = [
        Stage("collect", "collect"),
        Stage("train-vae", "train-vae"),
        Stage(f"train-agent/{mode}", "train-agent", config.algo, config.seed),
        Stage(f"evaluate/{mode}", "evaluate", config.algo, config.seed, first=True),
    ]
    return [(f"round{r}/{s.name}", s) for s in stages]


# ---------------------------------------------------------------------------------------------
# Rounds after the first: collect with the previous agent, refit the VAE


def agent_collect_config(config: IterateConfig, r: int) -> Any:
    """Round ``r``'s collection: round ``r-1``'s agent with exploration noise, new seeds."""
    from envs.collect import CollectConfig

    collect, tracks = config.collect, config.evaluate
    extra = {"n_envs": collect.n_envs} if collect.n_envs else {}
    seed = r * ROUND_SEED_STRIDE
    if seed < tracks.seed + tracks.episodes and tracks.seed < seed + collect.episodes:
        raise ValueError(
            f"round {r} would collect on seeds {seed}..{seed + collect.episodes - 1}, which include the "
            f"evaluation tracks (seeds from {tracks.seed}): the refit VAE would train on them; "
            "collect fewer episodes per round"
        )
    return CollectConfig(
        config.env_id,
        out=config.pipeline(r).data_dir,
        episodes=collect.episodes,
        policy=str(config.agent_dir(r - 1)),
        policy_noise=config.policy_noise,
        epsilon=config.epsilon,
        max_steps=collect.max_steps,
        seed=seed,
        progress=config.progress,
        backend=config.backend,
        **extra,
    )


def mix(config: IterateConfig, r: int) -> str:
    """The --mix of round ``r``'s refit: earlier rounds share 1 - new_data_share equally.

    >>> mix(IterateConfig("E", out="o", new_data_share=0.5), 2)
    '0.25,0.25,0.5'
    """
    old = (1.0 - config.new_data_share) / r
    return ",".join([f"{old:.6g}"] * r + [f"{config.new_data_share:.6g}"])


def refit_config(config: IterateConfig, r: int, *, resume: bool = False) -> Any:
    """Round ``r``'s VAE refit: every round's data so far, --init from round ``r-1``'s VAE."""
    data = [str(config.pipeline(k).data_dir) for k in range(r + 1)]
    return dataclasses.replace(
        vae_config(config.pipeline(r), resume=resume),
        data_dir=data[0],
        more_data_dirs=tuple(data[1:]),
        mix=mix(config, r),
        init=str(config.pipeline(r - 1).vae_checkpoint),
    )


def refit_command(config: IterateConfig, r: int) -> str:
    """``worldmodel train-vae DATA_DIR ... --init ...`` of round ``r``'s refit."""
    vae = refit_config(config, r)
    command = command_line("worldmodel train-vae", dataclasses.replace(vae, more_data_dirs=()), ("data_dir",))
    head = f"worldmodel train-vae {shlex.quote(vae.data_dir)}"
    return head + "".join(" " + shlex.quote(d) for d in vae.more_data_dirs) + command[len(head) :]


def _collect_with_agent(config: IterateConfig, r: int) -> dict[str, Any]:
    from agents.bundle_policy import collect_policy
    from envs.collect import collect_rollouts

    collect = agent_collect_config(config, r)
    summary = collect_rollouts(collect, collect_policy(collect))
    return {
        "policy": collect.policy,
        "env_frames": summary.env_frames,
        "frames_stored": summary.new_frames,
        "episodes": summary.new_episodes,
        "mean_return": summary.mean_return,
    }


def _refit_vae(config: IterateConfig, r: int) -> dict[str, Any]:
    from worldmodel.vae.train import train_vae

    vae_dir = config.pipeline(r).vae_dir
    train_vae(refit_config(config, r, resume=(vae_dir / "resume.safetensors").is_file()))
    summary = json.loads((vae_dir / "summary.json").read_text())
    keys = ("steps", "epochs", "val_mse_per_pixel", "active_dims")
    record = {"vae_" + k: summary[k] for k in keys} | {"training_wall_s": summary["wall_s"], "init": summary["init"]}
    # The VAE change on each dataset: the previous round's VAE before the refit vs the refit VAE.
    record["datasets"] = [
        {k: d.get(k) for k in ("data_dir", "weight", "init_val_mse_per_pixel", "val_mse_per_pixel")}
        for d in summary["datasets"]
    ]
    return record


def _run_in_process(run: Any, config: IterateConfig, r: int) -> dict[str, Any]:
    started = time.monotonic()
    record = run(config, r)
    rss = peak_rss_mib()
    record.update(
        {
            "status": "done",
            "wall_s": round(time.monotonic() - started, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "peak_rss_mib": max(rss["self"], rss["children"]),
            "peak_rss_note": "in-process: the iterate process's peak so far",
        }
    )
    return record


# ---------------------------------------------------------------------------------------------
# The loop


def command_of(config: IterateConfig, r: int, stage: Stage) -> str:
    """The ``worldmodel`` command equivalent to round ``r``'s ``stage``."""
    if r > 0 and stage.kind == "collect":
        return command_line("worldmodel collect", agent_collect_config(config, r), ("env_id",))
    if r > 0 and stage.kind == "train-vae":
        return refit_command(config, r)
    return stage_command(config.pipeline(r), stage)


def _record_run(config: IterateConfig, command: str | None) -> None:
    path = Path(config.out) / ITERATE_FILE
    previous = json.loads(path.read_text()) if path.is_file() else {}
    commands = previous.get("commands", [])
    if command and command not in commands:
        commands.append(command)
    stage_commands = [
        [name, command_of(config, r, stage)] for r in range(config.rounds) for name, stage in round_stages(config, r)
    ]
    write_json_atomic(
        path,
        {
            "config": config.to_dict(),
            "commands": commands,
            "machines": [*previous.get("machines", []), describe_machine()],
            "stage_commands": stage_commands,
        },
    )


def run_iterate(config: IterateConfig, *, command: str | None = None, log: Any = print) -> dict[str, Any]:
    """Run every round of ``config`` that is not complete; returns the ``stages.json`` content."""
    check_inputs(config.pipeline(0))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _record_run(config, command)
    stages = read_stages(out)
    for r in range(config.rounds):
        pipeline = config.pipeline(r)
        todo = [(name, stage) for name, stage in round_stages(config, r) if not is_done(pipeline, stage)]
        if not todo:
            log(f"[iterate] round {r}: complete, skipped")
            continue
        for name, stage in todo:
            log(f"[iterate] {name}: running  ({command_of(config, r, stage)})")
            if r > 0 and stage.kind == "collect":
                stages[name] = _run_in_process(_collect_with_agent, config, r)
            elif r > 0 and stage.kind == "train-vae":
                stages[name] = _run_in_process(_refit_vae, config, r)
            else:
                stages[name] = run_stage(pipeline, stage)
            log(f"[iterate] {name}: done in {stages[name]['wall_s']:.1f} s")
            write_json_atomic(out / STAGES_FILE, stages)
    return stages


# ---------------------------------------------------------------------------------------------
# Command line


SECTION_FLAGS: dict[str, tuple[type, tuple[str, ...]]] = {
    "collect": (RoundCollectSettings, ("collect_episodes", "collect_policy", "collect_max_steps", "collect_n_envs")),
    "vae": (VaeSettings, ("vae_epochs", "vae_steps", "vae_batch_size", "vae_latent_dim", "vae_width_multiplier")),
    "agent": (AgentSettings, ("agent_env_frames", "agent_n_envs", "train_eval_freq", "train_eval_episodes",
                              "checkpoint_freq")),
    "evaluate": (RoundEvaluateSettings, ("eval_episodes",)),
}  # fmt: skip
"""The section fields ``worldmodel iterate`` takes on the command line, by their flat names (``--vae-epochs``),
with the settings class whose defaults and help they show."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel iterate``."""
    add_config_arguments(parser, IterateConfig, positional=("env_id",), skip=SECTION_FLAGS)
    for section, (settings, flags) in SECTION_FLAGS.items():
        add_flat_arguments(parser, section, settings, flags)


def config_of(args: argparse.Namespace) -> IterateConfig:
    """The config the arguments of :func:`add_arguments` give."""
    sections = {name: settings_from_args(name, cls, flags, args) for name, (cls, flags) in SECTION_FLAGS.items()}
    return config_from_args(IterateConfig, args, **sections)


def run(args: argparse.Namespace) -> int:
    """``worldmodel iterate ENV_ID --rounds R --out DIR [...]``."""
    config = config_of(args)
    run_iterate(config, command=shlex.join(["worldmodel", *sys.argv[1:]]))
    print(Path(config.out) / STAGES_FILE)
    return 0
