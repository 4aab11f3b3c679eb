"""``worldmodel train-agent``: train any SB3 algorithm on VAE latents (or on pixels, for comparison).

``--encoder finetune`` hands the policy the VAE's preprocessed frames instead and trains
a copy of the VAE encoder inside it (:mod:`agents.encoder_extractor`), optionally with
the VAE loss as an auxiliary term (``--aux-recon-weight``).

:func:`train_agent` resolves the hyperparameters (shipped preset, ``--hyperparams``
file, command line), builds the training stack and an identically wrapped evaluation
stack (VecNormalize statistics synced by ``EvalCallback``, seeds disjoint from the
training seeds), trains with evaluation, resume checkpoints, TensorBoard and a progress
bar, and leaves a bundle in the run directory (see :mod:`agents.bundle`).

>>> from worldmodel.common.configargs import field_docs
>>> field_docs(AgentConfig)["latent_history"]
"Concatenate the latest k latents into each observation (default: the preset's latent_history, else 1)."
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from agents.algorithms import AlgorithmSpec, check_action_space, get_algorithm
from agents.bundle import (
    CONFIG_FILE,
    MEMORY_FILE,
    VAE_FILE,
    BundleError,
    check_copies,
    copy_vae,
    load_model,
    load_vec_normalize,
    read_best,
    read_config,
    save_bundle,
    write_learning_curve,
    write_summary,
)
from agents.compiled_update import MIN_GRADIENT_STEPS, compile_update, planned_gradient_steps
from agents.encoder_extractor import finetune_policy_kwargs
from agents.hyperparams import (
    EVAL_SEED_OFFSET,
    Hyperparams,
    algo_kwargs_for_sb3,
    check_replay_memory,
    resolve_hyperparams,
)
from agents.policy_file import check_storable
from agents.quantile_loss import QUANTILE_LOSS_USERS, use_compiled_quantile_loss
from agents.resume import (
    CHECKPOINT_DIR,
    KeepBestCallback,
    ResumeCallback,
    TrainingStopped,
    checkpoint_on_signal,
    read_state,
    restore_eval_history,
    state_from_bundle,
)
from agents.vec_env import StackConfig, build_vec_env, check_stack, find_vec_normalize, load_stack_vae
from worldmodel.common.atomic import write_json_atomic, writing
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.common.device import default_precision, resolve_device
from worldmodel.common.sealed import sealed
from worldmodel.memory.model import load_memory
from worldmodel.vae.checkpoint import file_sha256

COMMAND_HELP = "train an SB3 agent on VAE latents (or --pixels) into a run directory"
"""One line for ``worldmodel --help``."""


@dataclass(frozen=True)
class AgentConfig:
    """Settings of one ``train-agent`` run."""

    env_id: str
    """Gymnasium env id, e.g. CarRacing-v3 or worldmodel/DotTarget-v0."""
    vae: str | None = None
    """VAE checkpoint (.safetensors) whose latents the agent sees; not used with --pixels."""
    memory: str | None = None
    """Memory checkpoint of `worldmodel train-memory` on --vae's latents: the agent sees [z, h]."""
    algo: str = "ppo"
    """SB3 algorithm: ppo, a2c, sac, td3, ddpg, dqn; with sb3-contrib also tqc, recurrentppo, qrdqn, trpo, crossq."""
    timesteps: int | None = None
    """Agent steps to train for (default: the preset's n_timesteps)."""
    out: str | None = None
    """Run directory (default: runs/agents/<env>__<algo>__<seed>__<time>)."""
    n_envs: int | None = None
    """Parallel training envs (default: the preset's)."""
    seed: int = 0
    """Training envs use seeds seed..seed+n_envs-1; evaluation envs seed+1000000 on."""
    hyperparams: str | None = None
    """rl-zoo-style YAML (env id or 'default' -> hyperparameters) merged over the shipped preset."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra gym.make keywords as JSON, e.g. '{"continuous": false}'."""
    latent_history: int | None = None
    """Concatenate the latest k latents into each observation (default: the preset's latent_history, else 1)."""
    include_action: bool | None = None
    """Append the previous action to the latent history (default: the preset's include_action, else off)."""
    latent: Literal["mean", "sample"] = "mean"
    """Hand the policy the posterior mean or a sample."""
    standardize_latents: bool = False
    """Standardise latents with the VAE's training-set statistics."""
    drop_inactive: bool = False
    """Drop latent dimensions the VAE's statistics mark inactive."""
    normalize: bool | None = None
    """VecNormalize observations and rewards (default: the preset's choice)."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """Env backend of training: gymnasium, or envpool (CarRacing-v3 and Atari in C++, ~5x faster; pip extra envpool)."""
    pixels: bool = False
    """Train the pixel baseline instead (CnnPolicy, frame skip 2, 64x64 grayscale, 2 stacked frames)."""
    encoder: Literal["frozen", "finetune"] = "frozen"
    """frozen: the policy sees the fixed VAE's latents; finetune: it sees frames and trains a copy of the encoder."""
    aux_recon_weight: float = 0.0
    """With --encoder finetune: weight of the VAE loss (recon + beta*KL per image) added to the RL loss (0: off)."""
    device: str = "auto"
    """Device of the policy and the encoder: auto, cpu, cuda."""
    encoder_precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Precision of the frozen VAE encoder's forward pass: auto (bf16 on CUDA and on CPUs with native bf16, where
    it encoded 1.6-1.8x faster; else fp32), fp32, bf16. The bundle records the one used; evaluation encodes alike."""
    torch_threads: int | None = None
    """Torch CPU threads of the trainer. Default: 1 when env threads (--backend envpool) or worker processes
    (--subproc) share the cores, else torch's own; spinning OpenMP threads on busy cores cost up to 10x."""
    compile_loss: bool = True
    """TQC and QR-DQN: compile their quantile Huber loss with torch.compile (about 2.5x faster TQC gradient
    steps on CPU, the same numbers up to rounding); where it cannot be built they keep the eager loss."""
    compile_update: bool = True
    """SAC and TQC: compile their whole gradient step (:mod:`agents.compiled_update`: the same update up to
    rounding, ~1.5x faster learning on CPU) when the run plans at least 5,000 gradient steps (compiling takes
    a minute or so); where it cannot be built SB3's update stays."""
    subproc: bool = False
    """Step the training envs (and the evaluation envs, one per episode up to n_envs) in worker processes."""
    eval_freq: int = 10_000
    """Evaluate every this many agent steps (0: never)."""
    eval_episodes: int = 5
    """Episodes per evaluation."""
    checkpoint_freq: int = 25_000
    """Write a resume checkpoint every this many agent steps."""
    keep_best: bool = False
    """Also keep the policy of the best training evaluation in RUN_DIR/best/ (score it with
    `worldmodel evaluate RUN_DIR --policy best`): late PPO training can lose what it had learned."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint (its SB3 zip and replay buffer are unpickled: trusted
    run directories only)."""
    progress_bar: bool = True
    """Show a progress bar."""
    tensorboard: bool = True
    """Log to RUN_DIR/tb for TensorBoard."""
    verbose: int = 0
    """SB3 verbosity (0, 1, 2)."""


def default_run_dir(config: AgentConfig) -> Path:
    """``runs/agents/<env_id>__<algo, pixels-algo or finetune-algo>__<seed>__<time>``."""
    mode = "pixels-" if config.pixels else "finetune-" if config.encoder == "finetune" else ""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "agents" / f"{config.env_id.replace('/', '-')}__{mode}{config.algo}__{config.seed}__{stamp}"


def resolve(config: AgentConfig) -> tuple[AlgorithmSpec, Hyperparams, StackConfig]:
    """The algorithm, merged hyperparameters and observation stack a config asks for."""
    spec = get_algorithm(config.algo)
    spec.load_class()
    if config.memory is not None:  # the hidden state holds the history and has read the actions: not the preset's
        config = dataclasses.replace(
            config,
            latent_history=1 if config.latent_history is None else config.latent_history,
            include_action=False if config.include_action is None else config.include_action,
        )
    hp = resolve_hyperparams(
        spec.name,
        config.env_id,
        pixels=config.pixels,
        user_file=config.hyperparams,
        overrides={
            "n_envs": config.n_envs,
            "n_timesteps": config.timesteps,
            "latent_history": config.latent_history,
            "include_action": config.include_action,
        },
    )
    if config.aux_recon_weight != 0 and (config.encoder != "finetune" or config.aux_recon_weight < 0):
        raise ValueError(
            f"--aux-recon-weight {config.aux_recon_weight} needs --encoder finetune and a weight >= 0 "
            "(a frozen encoder has no loss to add it to)"
        )
    if config.encoder == "finetune" and hp.policy == "MultiInputPolicy":
        raise ValueError(
            "--encoder finetune feeds the policy one image observation, not a dict; use MlpPolicy or CnnPolicy "
            "(the VAE encoder replaces their features extractor)"
        )
    normalize = hp.normalize
    if config.normalize is not None:
        normalize = (hp.normalize or {}) if config.normalize else None
    if normalize is not None:
        normalize = {"gamma": hp.algo_kwargs.get("gamma", 0.99), **normalize}
        if config.encoder == "finetune":
            normalize["norm_obs"] = False  # frames stay uint8 images; rewards are still normalised
    stack = StackConfig(
        env_id=config.env_id,
        env_kwargs={**hp.env_kwargs, **config.env_kwargs},
        frame_skip=hp.frame_skip,
        pixels=config.pixels,
        frame_spec=hp.frame_spec,
        frame_stack=hp.frame_stack,
        latent=config.latent,
        latent_history=hp.latent_history,
        include_action=hp.include_action,
        standardize_latents=config.standardize_latents,
        drop_inactive=config.drop_inactive,
        normalize=normalize,
        encoder=config.encoder,
        backend=config.backend,
        memory=config.memory is not None,
        encoder_precision=encoder_precision(config),
    )
    return spec, hp, stack


def encoder_precision(config: AgentConfig) -> str:
    """``config.encoder_precision`` with ``auto`` resolved for its device (fp32 where no frozen encoder runs).

    >>> encoder_precision(AgentConfig("CarRacing-v3", pixels=True))
    'fp32'
    """
    if config.encoder_precision != "auto":
        return config.encoder_precision
    if config.pixels or config.encoder == "finetune":
        return "fp32"
    return default_precision(resolve_device(config.device))


def trainer_threads(config: AgentConfig) -> int:
    """Torch threads for ``config``'s trainer (see ``AgentConfig.torch_threads``).

    >>> trainer_threads(AgentConfig("CarRacing-v3", backend="envpool"))
    1
    """
    if config.torch_threads is not None:
        if config.torch_threads < 1:
            raise ValueError(f"--torch-threads must be >= 1, got {config.torch_threads}")
        return config.torch_threads
    envs_use_cores = config.backend == "envpool" or config.subproc
    return 1 if envs_use_cores and not torch.cuda.is_available() else torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (envs are seeded through ``VecEnv.seed``)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _prepare_run_dir(config: AgentConfig) -> tuple[Path, AgentConfig]:
    """The run directory, and on --resume the stored config (with a new --timesteps if given)."""
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    if config.resume:
        if config.out is None:
            raise ValueError("--resume needs --out RUN_DIR, the run directory to continue")
        record = read_config(run_dir)
        try:
            stored = AgentConfig(**{"encoder_precision": "fp32", **record["agent"]})  # older runs: fp32
        except TypeError as exc:
            raise BundleError(
                f"{run_dir / CONFIG_FILE}: its agent settings are not ones this worldmodel reads ({exc}); restore the "
                "file from the original run directory, or train a new run into another --out"
            ) from exc
        _check_resume_inputs(run_dir, record, stored, config)
        changes = {"resume": True, "out": str(run_dir), "progress_bar": config.progress_bar}
        changes.update(compile_loss=config.compile_loss, compile_update=config.compile_update)  # speed, not recipe
        if config.timesteps is not None:
            changes["timesteps"] = config.timesteps
        if config.keep_best or read_best(run_dir) is not None:  # a run may start keeping it when continued
            changes["keep_best"] = True
        return run_dir, dataclasses.replace(stored, **changes)
    if (run_dir / CONFIG_FILE).exists():
        raise ValueError(
            f"{run_dir} already holds a train-agent run; continue it with --resume, or choose another --out"
        )
    return run_dir, config


def _check_resume_inputs(run_dir: Path, record: dict[str, Any], stored: AgentConfig, config: AgentConfig) -> None:
    """Refuse a --resume whose --vae, --memory or --hyperparams differ from what the run in ``run_dir`` started with:
    it continues with its own, and must not silently leave the ones given unused."""
    drop = "drop the option to continue the run as it started, or train a new run into another --out"
    for name, copy, sha_key in (("vae", VAE_FILE, "vae_sha256"), ("memory", MEMORY_FILE, "memory_sha256")):
        given, expected = getattr(config, name), record.get(sha_key)
        if given is None or expected is None or not Path(given).is_file():
            continue
        actual = file_sha256(given)
        if actual != expected:
            raise ValueError(
                f"--resume continues {run_dir} with the {name} it started with ({run_dir / copy}, SHA-256 "
                f"{expected[:12]}...), but --{name} {given} is another file (SHA-256 {actual[:12]}...); {drop}"
            )
    if config.hyperparams is None:
        return
    _, hp, _ = resolve(dataclasses.replace(stored, hyperparams=config.hyperparams))
    given, started = (_flat_hyperparams(h) for h in (hp.to_dict(), record["hyperparams"]))
    differ = sorted(key for key in {*given, *started} if given.get(key) != started.get(key))
    if differ:
        raise ValueError(
            f"--resume continues {run_dir} with the hyperparameters it started with (its {CONFIG_FILE}), but "
            f"--hyperparams {config.hyperparams} gives other values of {', '.join(differ)}; {drop}"
        )


def _flat_hyperparams(hp: dict[str, Any]) -> dict[str, Any]:
    """Resolved hyperparameters as one JSON-form mapping, the budget (which --resume may change) left out."""
    flat = json.loads(json.dumps({**hp, **hp.get("algo_kwargs", {})}))
    return {key: value for key, value in flat.items() if key not in ("algo_kwargs", "n_timesteps")}


def _versions() -> dict[str, str]:
    return {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__}


def write_run_config(
    run_dir: Path, config: AgentConfig, spec: AlgorithmSpec, hp: Hyperparams, stack: StackConfig
) -> None:
    """Copy the VAE (latent runs) and the memory model (--memory) into ``run_dir``; write ``config.json`` with
    their SHA-256."""
    vae_sha = memory_sha = None
    if not config.pixels:
        vae = load_stack_vae(config.vae)
        if config.memory is not None:  # before anything is written: a missing file, or another VAE's (naming both)
            load_memory(config.memory, vae_sha256=file_sha256(vae.path))
        run_dir.mkdir(parents=True, exist_ok=True)
        vae_sha = copy_vae(vae.path, run_dir)
    if config.memory is not None:
        memory_sha = copy_vae(config.memory, run_dir, MEMORY_FILE)
    write_json_atomic(
        run_dir / CONFIG_FILE,
        sealed(
            {
                "agent": dataclasses.asdict(config),
                "algo": spec.name,
                "hyperparams": hp.to_dict(),
                "stack": stack.to_dict(),
                "vae_sha256": vae_sha,
                "memory_sha256": memory_sha,
                "eval_seed": config.seed + EVAL_SEED_OFFSET,
                "versions": _versions(),
            }
        ),
    )


def _load_replay_buffer(model: BaseAlgorithm, path: Path) -> None:
    """SB3's ``load_replay_buffer``, with an unreadable file (truncated, corrupt) refused in one line."""
    try:
        model.load_replay_buffer(path)
    except Exception as exc:  # unpickling a damaged file raises almost anything
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise BundleError(
            f"{path} is not a readable replay buffer ({reason}); restore it from a copy, or train a new run into "
            "another --out (an off-policy run cannot continue faithfully without it)"
        ) from exc


def _remove_unstarted_run(run_dir: Path, existed: bool) -> None:
    """Remove what a new run wrote into ``run_dir`` before training started: all of it if it made the directory."""
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in (CONFIG_FILE, VAE_FILE, MEMORY_FILE):
        (run_dir / name).unlink(missing_ok=True)


def _check_copies(run_dir: Path, config: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """The run's VAE and memory-model copies (None where the stack has none), checked against their hashes."""
    try:
        check_copies(run_dir, config)
    except BundleError as exc:
        raise BundleError(f"{exc}; --resume needs the exact files the run started with") from exc
    vae = None if config["stack"]["pixels"] else run_dir / VAE_FILE
    return vae, run_dir / MEMORY_FILE if config["stack"].get("memory") else None


def _new_model(
    spec: AlgorithmSpec, hp: Hyperparams, venv: VecEnv, config: AgentConfig, run_dir: Path, vae_path: Path | None
) -> BaseAlgorithm:
    cls = spec.load_class()
    algo_kwargs = algo_kwargs_for_sb3(hp.algo_kwargs)
    if config.encoder == "finetune":
        algo_kwargs["policy_kwargs"] = finetune_policy_kwargs(
            algo_kwargs.get("policy_kwargs", {}),
            vae_path,
            history=hp.latent_history,
            standardize=config.standardize_latents,
            drop_inactive=config.drop_inactive,
            aux_recon_weight=config.aux_recon_weight,
        )
    return cls(
        hp.policy,
        venv,
        seed=config.seed,
        device=str(resolve_device(config.device)),
        tensorboard_log=str(run_dir / "tb") if config.tensorboard else None,
        verbose=config.verbose,
        **algo_kwargs,
    )


def train_agent(config: AgentConfig, *, after_eval: BaseCallback | None = None, stop_on_signal: bool = True) -> Path:
    """Train, evaluate and bundle an agent; returns the run directory.

    ``after_eval`` runs after each evaluation (SB3's ``callback_after_eval``): it reads the
    results from its ``parent``, the ``EvalCallback``, and returning False ends training early
    (the run is still bundled). :mod:`agents.tune` prunes trials with it.

    ``stop_on_signal``: the first SIGINT or SIGTERM writes a resume checkpoint and stops training
    (:class:`agents.resume.TrainingStopped`); False leaves signals as they are, for callers that never
    resume a run (tune's trials: a killed trial is retried from scratch).
    """
    run_dir, config = _prepare_run_dir(config)
    if config.keep_best and config.eval_freq <= 0:
        raise ValueError("--keep-best keeps the best training evaluation's policy: it needs --eval-freq > 0")
    spec, hp, stack = resolve(config)
    config = dataclasses.replace(config, encoder_precision=stack.encoder_precision)  # resumed as it started
    seed_everything(config.seed)
    torch.set_num_threads(trainer_threads(config))
    if spec.name in QUANTILE_LOSS_USERS:
        use_compiled_quantile_loss(config.compile_loss)
    venv = eval_env = None
    existed = run_dir.exists()
    try:  # a new run that fails to start leaves nothing behind: a rerun with good inputs must start afresh
        if not config.resume:  # refuse bad inputs before the run directory exists
            _, action_space = check_stack(stack, config.vae)
            check_action_space(spec, action_space, config.env_id)
            write_run_config(run_dir, config, spec, hp, stack)
        stored = read_config(run_dir)
        vae_path, memory_path = _check_copies(run_dir, stored)
        device = str(resolve_device(config.device))
        venv = build_vec_env(stack, n_envs=hp.n_envs, seed=config.seed, vae=vae_path, device=device,
                             subproc=config.subproc, memory=memory_path)  # fmt: skip
        check_replay_memory(hp.algo_kwargs, spec, venv.observation_space, venv.action_space)
        # With worker processes, evaluation episodes run side by side too (SB3 splits them without bias)
        eval_n_envs = min(config.eval_episodes, hp.n_envs) if config.subproc else 1
        eval_env = build_vec_env(
            stack,
            n_envs=eval_n_envs,
            seed=config.seed + EVAL_SEED_OFFSET,
            vae=vae_path,
            device=device,
            training=False,
            subproc=config.subproc,
            memory=memory_path,
        )
        eval_callback = None
        if config.eval_freq > 0:
            eval_callback = EvalCallback(
                eval_env,
                n_eval_episodes=config.eval_episodes,
                eval_freq=max(1, config.eval_freq // hp.n_envs),
                log_path=str(run_dir),
                deterministic=True,
                verbose=config.verbose,
                callback_after_eval=after_eval,
            )
        state = read_state(run_dir) if config.resume else None
        if config.resume and state is None:  # a finished run whose checkpoints were not kept: its bundle
            state = state_from_bundle(run_dir, off_policy=spec.off_policy)
        if config.resume and state is None:  # killed before its first checkpoint: nothing to lose
            print(f"--resume: {run_dir} has no checkpoint yet; training starts from step 0", file=sys.stderr,
                  flush=True)  # fmt: skip
        summary: dict[str, Any] = {"resumed_from_step": None}
        if state is not None:
            ckpt = run_dir / CHECKPOINT_DIR
            files = state["files"]
            extractor_vae = vae_path if stack.encoder == "finetune" else None
            model = load_model(ckpt / files["model"], spec, hp.algo_kwargs, venv, device, extractor_vae=extractor_vae)
            if config.tensorboard:
                model.tensorboard_log = str(run_dir / "tb")
            if "replay_buffer" in files:
                _load_replay_buffer(model, ckpt / files["replay_buffer"])
                summary["replay_buffer_restored"] = int(model.replay_buffer.size() * model.replay_buffer.n_envs)
            if "vec_normalize" in files:
                load_vec_normalize(find_vec_normalize(venv), ckpt / files["vec_normalize"])
            if eval_callback is not None and state["eval"] is not None:
                restore_eval_history(eval_callback, state["eval"], model.num_timesteps, hp.n_envs)
            summary["resumed_from_step"] = int(model.num_timesteps)
            resume_callback = ResumeCallback(
                run_dir,
                config.checkpoint_freq,
                eval_callback,
                env_frames=state["env_frames"],
                elapsed_s=state["elapsed_s"],
                curve=state.get("curve"),
            )
        else:
            model = _new_model(spec, hp, venv, config, run_dir, vae_path)
            resume_callback = ResumeCallback(run_dir, config.checkpoint_freq, eval_callback)
        check_storable(model)  # the bundle's policy files are written at the end: refuse what they cannot hold now
        remaining = max(0, hp.n_timesteps - int(model.num_timesteps))
        if spec.off_policy and planned_gradient_steps(model, remaining) >= MIN_GRADIENT_STEPS:
            compile_update(model, config.compile_update)
    except BaseException:
        for env in (venv, eval_env):
            if env is not None:
                env.close()
        if not config.resume:
            _remove_unstarted_run(run_dir, existed)
        raise
    start_step = int(model.num_timesteps)
    keep_best = None
    if config.keep_best and eval_callback is not None:
        keep_best = KeepBestCallback(run_dir, eval_callback, resume_callback)
    callbacks = [c for c in (eval_callback, resume_callback, keep_best) if c is not None]
    started = time.monotonic()
    signals = checkpoint_on_signal(resume_callback) if stop_on_signal else contextlib.nullcontext()
    with signals, writing(run_dir):  # SB3 writes some files itself (evaluations.npz): a full disk names the run
        model.learn(
            total_timesteps=max(0, hp.n_timesteps - start_step),
            callback=callbacks,
            reset_num_timesteps=state is None,
            progress_bar=config.progress_bar,
            tb_log_name="run",
        )
    session_s = time.monotonic() - started
    if resume_callback.stopped_at is not None and model.num_timesteps < hp.n_timesteps:
        venv.close()
        eval_env.close()
        raise TrainingStopped(
            f"stopped by a signal at step {resume_callback.stopped_at} of {hp.n_timesteps}, with a resume checkpoint "
            f"in {run_dir / CHECKPOINT_DIR}; continue with: worldmodel train-agent {config.env_id} --out {run_dir} "
            "--resume"
        )
    save_bundle(run_dir, model, venv)
    resume_callback.save()
    write_learning_curve(run_dir, f"{spec.name} on {config.env_id} ({stack.mode})")
    last_eval = None
    if eval_callback is not None and eval_callback.evaluations_results:
        results = np.asarray(eval_callback.evaluations_results[-1])
        last_eval = {
            "step": int(eval_callback.evaluations_timesteps[-1]),
            "mean_return": float(results.mean()),
            "std_return": float(results.std()),
        }
    summary.update(
        {
            "algo": spec.name,
            "env_id": config.env_id,
            "mode": stack.mode,
            "agent_steps": int(model.num_timesteps),
            "env_frames": int(resume_callback.env_frames),
            "elapsed_s": round(resume_callback.elapsed_s, 2),
            "steps_per_s_this_session": round((model.num_timesteps - start_step) / max(session_s, 1e-9), 1),
            "last_eval": last_eval,
            "best_eval": _best_eval(run_dir) if config.keep_best else None,
            "curve": resume_callback.curve,
        }
    )
    write_summary(run_dir, summary)
    venv.close()
    eval_env.close()
    return run_dir


def _best_eval(run_dir: Path) -> dict[str, Any] | None:
    best = read_best(run_dir)
    return None if best is None else {k: best[k] for k in ("step", "env_frames", "mean_return", "std_return")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel train-agent``."""
    add_config_arguments(parser, AgentConfig, positional=("env_id",))


def run(args: argparse.Namespace) -> int:
    """``worldmodel train-agent ENV_ID --vae VAE ...``: train and print where the bundle is."""
    run_dir = train_agent(config_from_args(AgentConfig, args))
    print(json.dumps(json.loads((run_dir / "summary.json").read_text()), indent=2))
    print(f"run directory: {run_dir}")
    return 0
