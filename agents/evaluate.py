"""``worldmodel evaluate RUN_DIR``: returns and episode lengths of a trained agent, and a video.

The bundle's stack is rebuilt exactly (:func:`agents.bundle.load_bundle`). Episode *i*
resets from ``--seed`` + *i* (by default the run's evaluation seed, disjoint from its training
seeds), whatever ``--n-envs`` is, so parallel envs score the tracks one env would, in the same
order; ``--random-baseline`` also scores a uniform-random policy on the same seeds. (On
EnvPool, whose envs take a seed only when made, env k starts from seed + k and runs on
from its own generator: the tracks depend on ``--n-envs`` there.)
``--video out.mp4`` records env frame | what the VAE reconstructs from the latent the
policy saw (pixel runs: the preprocessed frame the CNN saw; ``--encoder finetune`` runs:
the fine-tuned encoder's mean decoded by the fine-tuned VAE's decoder) | the return so far.
Stopped part-way, an evaluation run again with the same settings resumes after the last
finished episode, on the same tracks (:mod:`agents.evaluation_progress`).

>>> from worldmodel.common.configargs import field_docs
>>> "H.264" in field_docs(EvaluateConfig)["video"]
True
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from agents.bundle import Bundle, load_bundle, policy_files, read_best, read_config
from agents.encoder_extractor import VAEEncoderExtractor, find_extractor
from agents.evaluation_progress import EpisodeLog, EvaluationProgress, progress_path
from agents.vec_env import find_vec_wrapper
from agents.video import PanelVideoWriter
from envs.latent.sb3_vec_env import VecLatentObservation
from worldmodel.common.atomic import write_json_atomic
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.vae.checkpoint import file_sha256
from worldmodel.vae.encoder import LatentEncoder

COMMAND_HELP = "evaluate a train-agent run: returns, episode lengths, --video"
"""One line for ``worldmodel --help``."""

EVALUATION_FILE = "evaluation.json"
"""Where ``evaluate`` writes its results in the run directory by default."""
BEST_EVALUATION_FILE = "evaluation-best.json"
"""Where ``--policy best`` writes its results by default."""


def evaluation_file(policy: str = "final") -> str:
    """The default name of the evaluation file of ``policy`` in a run directory.

    >>> evaluation_file("best")
    'evaluation-best.json'
    """
    return {"final": EVALUATION_FILE, "best": BEST_EVALUATION_FILE}[policy]


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of one ``evaluate`` run."""

    run_dir: str
    """Run directory written by ``worldmodel train-agent``."""
    episodes: int = 10
    """Episodes to run."""
    deterministic: bool = True
    """Act with the policy's mode instead of sampling."""
    seed: int | None = None
    """Seed of the first episode (default: the run's evaluation seed)."""
    video: str | None = None
    """Write an H.264 MP4 of the first --video-episodes episodes: env frame | VAE reconstruction | return."""
    video_episodes: int = 1
    """Episodes recorded in the video."""
    fps: int = 30
    """Video frames per second."""
    random_baseline: bool = False
    """Also evaluate a uniform-random policy on the same seeds."""
    out: str | None = None
    """Where to write the JSON results (default: RUN_DIR/evaluation.json; evaluation-best.json for --policy best)."""
    device: str = "auto"
    """Device of the policy and the encoder."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend to score on: gymnasium (the official env, whatever the agent trained on) or envpool."""
    n_envs: int = 1
    """Envs run at once, each in its own worker process when more than 1. Episode i resets from seed + i
    whatever n_envs is (env k runs episodes k, k + n_envs, ...), so every policy and every n_envs scores the
    same tracks (on EnvPool, env k starts from seed + k and the tracks depend on n_envs)."""
    policy: Literal["final", "best"] = "final"
    """The policy training ended with, or the best training evaluation's (kept by train-agent --keep-best)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """JSON keywords for gym.make over the run's own, e.g. '{"repeat_action_probability": 0}' (Atari without
    sticky actions, as most Atari 100k papers score)."""


Act = Callable[[np.ndarray, np.ndarray], np.ndarray]


def policy_act(bundle: Bundle, deterministic: bool) -> Act:
    """The bundle's policy as ``act(obs, episode_start) -> actions`` (LSTM state kept for recurrent ones).

    Sampled actions of a gSDE policy redraw the exploration noise as training did: at the
    first step, then every ``sde_sample_freq`` steps. SB3's ``predict`` never redraws it, so
    without this one noise matrix would bias every action of the whole evaluation.
    """
    model = bundle.model
    redraw_every = int(getattr(model, "sde_sample_freq", -1))
    redraw = not deterministic and bool(getattr(model, "use_sde", False))
    state: Any = None
    steps = 0

    def act(obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        nonlocal state, steps
        if redraw and (steps == 0 or (redraw_every > 0 and steps % redraw_every == 0)):
            model.policy.reset_noise(len(episode_start))
        steps += 1
        actions, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        return actions

    return act


def random_act(venv: VecEnv, seed: int) -> Act:
    """A uniform-random policy over ``venv``'s action space, seeded."""
    space = venv.action_space
    space.seed(seed)
    return lambda obs, episode_start: np.stack([space.sample() for _ in range(venv.num_envs)])


def _video_frames(bundle: Bundle) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """Returns a function giving (raw env frame, what the policy saw as a frame) for env 0."""
    encoder: LatentEncoder | VAEEncoderExtractor | None
    if bundle.stack.pixels:
        spec = bundle.stack.pixel_frame_spec()
        encoder = None
    elif bundle.stack.encoder == "finetune":
        encoder = find_extractor(bundle.model.policy)
        spec = encoder.frame_spec
    else:
        encoder = find_vec_wrapper(bundle.venv, VecLatentObservation).encoder
        spec = encoder.frame_spec

    def frames() -> tuple[np.ndarray, np.ndarray]:
        raw = bundle.venv.get_attr("last_frame", [0])[0]
        seen = spec.apply(raw)
        return raw, seen if encoder is None else encoder.reconstruct(seen[None])[0]

    return frames


def episode_targets(episodes: int, n_envs: int) -> np.ndarray:
    """Episodes each env runs: SB3's unbiased split (short episodes cannot crowd out long ones).

    >>> episode_targets(10, 4).tolist()
    [3, 3, 2, 2]
    """
    return np.array([(episodes + i) // n_envs for i in range(n_envs)][::-1])


def run_episodes(
    venv: VecEnv,
    act: Act,
    episodes: int,
    *,
    seed: int,
    seed_each_episode: bool = True,
    on_step: Callable[[float, bool], None] | None = None,
    log: EpisodeLog | None = None,
    on_episode: Callable[[EpisodeLog], None] | None = None,
) -> tuple[list[float], list[int]]:
    """Run ``episodes`` episodes on ``venv`` from ``seed``; returns Monitor's returns and lengths.

    With ``seed_each_episode`` (envs wrapped in :class:`~envs.episode_seeds.EpisodeSeeds`, as
    :func:`~agents.vec_env.build_vec_env` does for Gymnasium envs), episode *i* resets from
    ``seed + i`` and is played by env ``i % n_envs``; results are in episode order, so any
    policy on any number of envs sees the same tracks. Without it (EnvPool), env k starts from
    ``seed + k`` and its later episodes from the env's own RNG; results are ordered by env.
    ``on_step(reward, done)`` is called for env 0 after the reset (reward 0) and after every step.

    ``log`` holds the episodes an interrupted run finished (``seed_each_episode`` only): only the
    rest are run. ``on_episode(log)`` is called after every counted episode.
    """
    n_envs = venv.num_envs
    targets = episode_targets(episodes, n_envs)
    log = EpisodeLog.empty(n_envs) if log is None else log
    if not log.is_done(targets):
        if seed_each_episode:  # env k's coming episodes are k + n_envs * j, from the first it has not finished
            for k, target in enumerate(targets):
                seeds = [seed + k + n_envs * j for j in range(len(log.finished[k]), target)]
                venv.env_method("set_episode_seeds", seeds, indices=[k])
        elif log.count():
            raise ValueError("only an evaluation that seeds each episode can resume from a log")
        venv.seed(seed)
        _play(venv, act, targets, log, on_step, on_episode)
    if seed_each_episode:
        order = [log.finished[i % n_envs][i // n_envs] for i in range(episodes)]
    else:
        order = [episode for done in log.finished for episode in done]
    return [r for r, _ in order], [length for _, length in order]


def _play(
    venv: VecEnv,
    act: Act,
    targets: np.ndarray,
    log: EpisodeLog,
    on_step: Callable[[float, bool], None] | None,
    on_episode: Callable[[EpisodeLog], None] | None,
) -> None:
    obs = venv.reset()
    episode_start = np.ones(venv.num_envs, dtype=bool)
    if on_step is not None:
        on_step(0.0, False)
    while not log.is_done(targets):
        obs, rewards, dones, infos = venv.step(act(obs, episode_start))
        episode_start = dones
        if on_step is not None:
            on_step(float(rewards[0]), bool(dones[0]))
        for k in np.flatnonzero(dones):
            if len(log.finished[k]) < targets[k]:
                log.finished[k].append((float(infos[k]["episode"]["r"]), int(infos[k]["episode"]["l"])))
                if on_episode is not None:
                    on_episode(log)


def _stats(returns: list[float], lengths: list[int]) -> dict[str, Any]:
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
        "std_length": float(np.std(lengths)),
        "returns": returns,
        "lengths": lengths,
    }


def evaluate_agent(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate the bundle in ``config.run_dir``; writes and returns the results."""
    run_dir = Path(config.run_dir)
    seed = config.seed if config.seed is not None else int(read_config(run_dir)["eval_seed"])
    if config.n_envs < 1 or config.n_envs > config.episodes:
        raise ValueError(f"--n-envs {config.n_envs} must be between 1 and --episodes ({config.episodes})")
    bundle = load_bundle(
        run_dir,
        n_envs=config.n_envs,
        seed=seed,
        device=config.device,
        frame_tap=config.video is not None,
        subproc=config.n_envs > 1,
        backend=config.backend,
        policy=config.policy,
        env_kwargs=config.env_kwargs,
    )
    results: dict[str, Any] = {
        "run_dir": str(run_dir),
        "policy": config.policy,
        "algo": bundle.algorithm.name,
        "env_id": bundle.stack.env_id,
        "mode": bundle.stack.mode,
        "backend": config.backend,
        "trained_on_backend": read_config(run_dir)["stack"].get("backend", "gymnasium"),
        "episodes": config.episodes,
        "seed": seed,
        "n_envs": config.n_envs,
        "deterministic": config.deterministic,
        "env_kwargs": bundle.stack.env_kwargs,
    }
    if config.policy == "best":
        best = read_best(run_dir)
        results["policy_step"], results["policy_training_eval"] = best["step"], best["mean_return"]
    out = Path(config.out) if config.out else run_dir / evaluation_file(config.policy)
    act = policy_act(bundle, config.deterministic)
    results["tracks"] = TRACKS[seeds_each_episode(config)]
    if config.video is None:
        results.update(_stats(*_run_resumable(bundle, act, config, seed, out)))
    else:
        results.update(_stats(*_run_with_video(bundle, act, config, seed)))
        results["video"] = config.video
    if config.random_baseline:
        rand = run_episodes(bundle.venv, random_act(bundle.venv, seed), config.episodes, seed=seed,
                            seed_each_episode=seeds_each_episode(config))  # fmt: skip
        results["random"] = _stats(*rand)
    bundle.venv.close()
    write_json_atomic(out, results)
    progress_path(out).unlink(missing_ok=True)
    return results


def seeds_each_episode(config: EvaluateConfig) -> bool:
    """Whether episode i resets from seed + i: on Gymnasium envs; EnvPool's take a seed only when made."""
    return config.backend == "gymnasium"


TRACKS = {True: "episode i from seed + i", False: "env k from seed + k, then its own generator"}
"""What ``tracks`` in an evaluation's results says about which episodes it ran."""


def _run_resumable(
    bundle: Bundle, act: Act, config: EvaluateConfig, seed: int, out: Path
) -> tuple[list[float], list[int]]:
    """``run_episodes`` that saves its progress beside ``out`` after every episode and resumes from it, where
    that is exact: on envs that seed each episode (not EnvPool)."""
    if not seeds_each_episode(config):
        return run_episodes(bundle.venv, act, config.episodes, seed=seed, seed_each_episode=False)
    settings = {
        "policy": config.policy,
        "policy_sha256": file_sha256(policy_files(bundle.run_dir, config.policy).weights),
        "episodes": config.episodes,
        "seed": seed,
        "tracks": TRACKS[True],
        "n_envs": config.n_envs,
        "deterministic": config.deterministic,
        **({"env_kwargs": config.env_kwargs} if config.env_kwargs else {}),
    }
    progress = EvaluationProgress(progress_path(out), settings, episode_targets(config.episodes, config.n_envs))
    if progress.resumed:
        print(f"resuming the evaluation from {progress.path}: {progress.log.count()} episodes already finished")
    return run_episodes(
        bundle.venv, act, config.episodes, seed=seed, log=progress.log, on_episode=lambda _: progress.save()
    )


def _run_with_video(bundle: Bundle, act: Act, config: EvaluateConfig, seed: int) -> tuple[list[float], list[int]]:
    frames = _video_frames(bundle)
    returns_so_far: list[float] = []
    recorded = 0
    with PanelVideoWriter(config.video, fps=config.fps) as video:

        def on_step(reward: float, done: bool) -> None:
            nonlocal recorded
            if recorded >= config.video_episodes:
                return
            returns_so_far.append((returns_so_far[-1] if returns_so_far else 0.0) + reward)
            video.add(*frames(), returns_so_far)
            if done:
                recorded += 1
                returns_so_far.clear()

        return run_episodes(bundle.venv, act, config.episodes, seed=seed, on_step=on_step,
                            seed_each_episode=seeds_each_episode(config))  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel evaluate``."""
    add_config_arguments(parser, EvaluateConfig, positional=("run_dir",))


def run(args: argparse.Namespace) -> int:
    """``worldmodel evaluate RUN_DIR``: print mean ± std return and episode length, write the JSON."""
    results = evaluate_agent(config_from_args(EvaluateConfig, args))
    print(
        f"{results['algo']} on {results['env_id']} ({results['mode']}, {results['policy']} policy), "
        f"{results['episodes']} episodes "
        f"from seed {results['seed']}: return {results['mean_return']:.2f} ± {results['std_return']:.2f}, "
        f"length {results['mean_length']:.1f} ± {results['std_length']:.1f}"
    )
    if "random" in results:
        rand = results["random"]
        print(f"random policy, same seeds: return {rand['mean_return']:.2f} ± {rand['std_return']:.2f}")
    print(json.dumps({k: v for k, v in results.items() if k not in ("returns", "lengths", "random")}, indent=2))
    return 0
