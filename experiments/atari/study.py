"""The Atari 100k study: one pipeline per game (collect, VAE, latent and pixel PPO, 30-episode scores), then every
agent scored again without sticky actions, as most Atari 100k papers play.

Budgets are Atari 100k's: 400k env frames (100k agent steps at frame skip 4) per agent. The latent arm's VAE
trains on random play that counts toward its budget: at most ``vae_frames`` env frames of random play, the
agent the rest. Everything resumes: run the same command again after an interruption.

>>> config = game_config(StudyConfig(games=("Pong",), seeds=(0, 1)), "Pong")
>>> config.env_id, config.agent.env_frames, config.agent.pixel_env_frames, config.runs.pixel_seeds
('ALE/Pong-v5', 300000, 400000, (0, 1))
>>> config.collect.episodes * config.collect.max_steps * 4  # env frames of random play, at most
100000
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from experiments.pipeline.config import PipelineConfig
from experiments.pipeline.records import (
    NO_STICKY_EVALUATION_FILE,
    copy_records,
    current_evaluation,
    read_json,
)
from experiments.pipeline.settings import (
    AgentSettings,
    CollectSettings,
    EvaluateSettings,
    ReportSettings,
    RunSettings,
    VaeSettings,
)
from experiments.pipeline.stages import run_pipeline

ATARI_FRAME_SKIP = 4
"""ALE v5's frame skip: env frames per agent step."""
NO_STICKY = {"repeat_action_probability": 0.0}
"""The scoring env's keywords without sticky actions (the pipeline's own ``evaluation.json`` plays ALE v5's 0.25)."""


@dataclass(frozen=True)
class StudyConfig:
    """Which games and seeds, and the budgets every game shares."""

    games: tuple[str, ...] = ("Pong", "Breakout", "Boxing", "Freeway", "MsPacman", "Seaquest")
    """ALE game names (``ALE/<Game>-v5``)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds of both arms."""
    out: str = "runs/atari-100k"
    """One pipeline output per game below it: OUT/<Game>/."""
    report_dir: str = "experiments/reports/atari-100k"
    """The study's report; each game's pipeline report and records in REPORT_DIR/<Game>/."""
    env_frames: int = 400_000
    """Each agent's budget in env frames (Atari 100k: 100k agent steps at frame skip 4)."""
    vae_frames: int = 100_000
    """Env frames of random play the latent arm's VAE may train on, out of its budget."""
    vae_episodes: int = 50
    """Random-play episodes for the VAE, each cut at vae_frames / vae_episodes env frames."""
    vae_epochs: int = 8
    """VAE training epochs (early stopping keeps the best)."""
    motion_weight: float = 100.0
    """The VAE's weight on pixels that move (experiments/reports/atari-ball: the only setting that put the
    paddles into the latent)."""
    eval_episodes: int = 30
    """Final scoring episodes per agent on Gymnasium's ALE/<Game>-v5."""
    train_eval_freq: int = 12_500
    """Agent steps between training evaluations (the learning curves)."""
    train_eval_episodes: int = 3
    """Episodes per training evaluation."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "games", tuple(self.games))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.games or not self.seeds:
            raise ValueError("give at least one game and one seed")
        if not 0 < self.vae_frames < self.env_frames:
            raise ValueError(f"vae_frames must be between 0 and env_frames ({self.env_frames}), got {self.vae_frames}")


def env_id(game: str) -> str:
    """The Gymnasium id of an ALE game.

    >>> env_id("Pong")
    'ALE/Pong-v5'
    """
    return f"ALE/{game}-v5"


def backend() -> str:
    """EnvPool for collection and training where it is installed, else Gymnasium (slower, the same games)."""
    return "envpool" if importlib.util.find_spec("envpool") is not None else "gymnasium"


def game_config(study: StudyConfig, game: str) -> PipelineConfig:
    """The pipeline of one game: random play for the VAE, latent PPO and pixel PPO on every seed, scored on
    ``eval_episodes`` episodes of Gymnasium's env (sticky actions 0.25)."""
    return PipelineConfig(
        env_id(game),
        out=str(Path(study.out) / game),
        backend=backend(),  # type: ignore[arg-type]
        collect=CollectSettings(
            episodes=study.vae_episodes,
            policy="random",
            max_steps=study.vae_frames // (study.vae_episodes * ATARI_FRAME_SKIP),
            n_envs=1,
        ),
        vae=VaeSettings(epochs=study.vae_epochs, kl_tolerance=0.5, motion_weight=study.motion_weight),
        agent=AgentSettings(
            env_frames=study.env_frames - study.vae_frames,
            pixel_env_frames=study.env_frames,
            eval_freq=study.train_eval_freq,
            eval_episodes=study.train_eval_episodes,
        ),
        runs=RunSettings(algos=("ppo",), seeds=study.seeds, pixel_seeds=study.seeds),
        evaluate=EvaluateSettings(episodes=study.eval_episodes, video=False),
        report=ReportSettings(name=game, dir=study.report_dir),
        progress=False,
    )


def score_without_sticky(config: PipelineConfig, log: Callable[[str], None] = print) -> list[Path]:
    """Score every trained agent of ``config`` again on the same episodes without sticky actions
    (:data:`NO_STICKY_EVALUATION_FILE` in each run); runs scored since their model was last written are skipped."""
    from agents.evaluate import EvaluateConfig, evaluate_agent

    written = []
    for run_dir in sorted((Path(config.out) / "agents").glob("*__seed*")):
        done = current_evaluation(run_dir, NO_STICKY_EVALUATION_FILE) is not None
        if done or read_json(run_dir / "summary.json") is None:
            continue
        log(f"[atari] {run_dir}: scoring without sticky actions")
        evaluate_agent(
            EvaluateConfig(
                str(run_dir),
                episodes=config.evaluate.episodes,
                seed=config.evaluate.seed,
                device=config.device,
                env_kwargs=NO_STICKY,
                out=str(run_dir / NO_STICKY_EVALUATION_FILE),
            )
        )
        written.append(run_dir / NO_STICKY_EVALUATION_FILE)
    return written


def run_game(study: StudyConfig, game: str, *, command: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run (or resume) one game's pipeline and its scores without sticky actions; returns its records folder."""
    config = game_config(study, game)
    run_pipeline(config, command=command, log=log)
    score_without_sticky(config, log)
    return copy_records(config.out, Path(study.report_dir) / game / "records")
