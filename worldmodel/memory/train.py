"""Train the memory model on a dataset's latents: ``worldmodel train-memory DATA --vae CKPT --out RUN``.

The dataset is first encoded with the VAE into ``RUN/latents`` (or ``--latents DIR``;
resumable, see :mod:`worldmodel.memory.sequences`). Episodes are split into training and
held-out ones. Each batch takes whole training episodes (padded, the padding masked out of
the loss) and walks them in windows of ``seq_len`` steps: one AdamW step per window, the
LSTM state carried from window to window and detached (truncated backpropagation through
time). As in World Models, the latents it reads are drawn from each frame's posterior
(``--no-sample-latents``: the means).

Held-out diagnostics, every epoch, on the posterior means:

- the mixture NLL per latent dimension against two baselines fitted to the training
  episodes in the same run: *copy* (``z_{t+1} ~ N(z_t, s^2)``, ``s`` the per-dimension RMS
  step) and *gaussian* (``z_{t+1} ~ N(m, v)``, the per-dimension mean and variance);
- open-loop next-latent RMSE at 1, 5 and 20 steps (the model fed its own mixture means and
  the real actions from starts every ``OPEN_LOOP_STRIDE`` steps) against copying the start;
- reward MSE against predicting the training mean; episode-end BCE against the training
  end rate, and the share of ends predicted (p > 0.5) and of false alarms.

RUN_DIR holds ``best.safetensors`` and ``last.safetensors`` (memory checkpoints tied to the
VAE's SHA-256), ``resume.safetensors``, ``config.json``, ``metrics.jsonl``, ``summary.json``,
``tb/`` and, when trained from DATA, ``rollout.png`` (:func:`rollout_strip`: real frames, their
VAE decodings and the decodings of an open-loop rollout from the same start and actions).
It keeps the guarantees of ``train-vae`` (:mod:`worldmodel.training.run`): a run killed at any
point resumes with ``--resume`` from its last completed epoch and ends exactly as an
uninterrupted run. Always in fp32, on the CPU or a GPU, and under ``torchrun --standalone
--nproc_per_node N`` with DistributedDataParallel: each rank reads every N-th episode of each
batch, padded to the batch's longest, and weights its loss by its share of the batch's steps,
so one DDP step equals a single-process step; held-out metrics are summed over all ranks, and
rank 0 encodes the latents and writes checkpoints, logs and figures.

>>> import tempfile
>>> from worldmodel.vae.checkpoint import file_sha256, save_vae
>>> from worldmodel.frames import FrameSpec
>>> from worldmodel.memory.sequences import LatentEpisode, write_latents
>>> from worldmodel.vae.model import ConvVAE, VAEConfig
>>> tmp = Path(tempfile.mkdtemp())
>>> save_vae(tmp / "vae.safetensors", ConvVAE(VAEConfig(16, 16, latent_dim=2, width_multiplier=0.25)),
...          FrameSpec(16, 16))
>>> rng = np.random.default_rng(0)
>>> episodes = [LatentEpisode(rng.normal(size=(9, 2)).astype(np.float32), np.zeros((9, 2), np.float32),
...             rng.integers(0, 3, 8), np.zeros(8, np.float32), np.eye(8, dtype=bool)[7], np.zeros(8, bool))
...             for _ in range(4)]
>>> _ = write_latents(tmp / "latents", episodes, vae_sha256=file_sha256(tmp / "vae.safetensors"), env_id="Toy")
>>> cfg = TrainMemoryConfig(None, vae=str(tmp / "vae.safetensors"), out=str(tmp / "run"),
...                         latents=str(tmp / "latents"), hidden=8, epochs=1, batch_size=2, device="cpu",
...                         tensorboard=False, progress=False)
>>> train_memory(cfg).name
'best.safetensors'
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from worldmodel.common.atomic import write_json_atomic
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.data.dataset import DatasetError, FrameDataset, check_frame_spec
from worldmodel.frames import tensor_to_frames
from worldmodel.memory.model import (
    LOG_STD_MIN,
    MDNRNN,
    MemoryConfig,
    dream,
    load_memory,
    memory_loss,
    mixture_log_prob,
    save_memory,
)
from worldmodel.memory.sequences import LatentSequences, LatentsError, encode_dataset
from worldmodel.training.distributed import (
    DistContext,
    all_reduce_sum,
    all_reduce_values,
    any_rank,
    barrier,
    is_main_process,
    run_on_ranks,
    wrap_ddp,
)
from worldmodel.training.run import (
    MetricsLog,
    NonFiniteLossError,
    RunCounters,
    TrainError,
    adamw_with_schedule,
    check_finite,
    check_run_dir,
    load_resume_state,
    make_run_dir,
    save_resume_state,
)
from worldmodel.vae.checkpoint import CheckpointError, file_sha256, load_vae, read_frame_spec
from worldmodel.vae.diagnostics import image_grid, write_png
from worldmodel.vae.model import ConvVAE

RESUME_FORMAT = "worldmodel.memory_train_state"
OPEN_LOOP_HORIZONS = (1, 5, 20)
OPEN_LOOP_STRIDE = 10
"""Open-loop rollouts start every this many steps of each held-out episode."""
BASELINE_MAX_EPISODES = 1000
"""Fit the baselines on at most this many training episodes, evenly spread."""
STRIP_START = 10
"""The rollout strip's model reads this many real latents before it dreams on."""
STRIP_STEPS = 20
MIN_STD = math.exp(LOG_STD_MIN)
"""The baselines' smallest standard deviation: the memory model's."""


class TrainMemoryError(TrainError):
    """A ``train-memory`` request that cannot run (no data, mismatched VAE, unusable run directory, ...)."""


@dataclass(frozen=True)
class TrainMemoryConfig:
    """Settings of :func:`train_memory` (and the ``worldmodel train-memory`` command)."""

    data_dir: str | None
    """Dataset directory written by `worldmodel collect` (may be left out with --latents of a finished encoding)."""
    vae: str
    """VAE checkpoint whose latents the memory model learns (its SHA-256 goes into every checkpoint)."""
    out: str
    """Run directory for checkpoints and metrics (created; must not hold a run unless --resume)."""
    latents: str | None = None
    """Latents directory (default: RUN/latents), encoded or brought up to date from DATA first."""
    hidden: int = 256
    """LSTM units (256 in World Models)."""
    mixtures: int = 5
    """Gaussian components per latent dimension (5 in World Models)."""
    action_dim: int | None = None
    """Number of discrete actions (default: the largest action in the data + 1); continuous actions: their size."""
    reward_weight: float = 1.0
    """Weight of the reward MSE in the loss."""
    end_weight: float = 1.0
    """Weight of the episode-end BCE in the loss."""
    seq_len: int = 32
    """Steps per truncated-BPTT window (one optimiser step each; the LSTM state carries across windows)."""
    batch_size: int = 16
    """Episodes per batch (over all DDP ranks together)."""
    epochs: int = 20
    """Passes over the training episodes (an upper bound when early stopping triggers)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    warmup_steps: int = 20
    """Linear warm-up steps before the cosine decay (at most a tenth of the run's steps)."""
    min_lr_fraction: float = 0.1
    """The cosine schedule decays to lr * min_lr_fraction at the last step."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Clip the gradient norm of each step to this (0 = off)."""
    sample_latents: bool = True
    """Train on latents drawn from each frame's posterior, as World Models (else on the means)."""
    val_fraction: float = 0.1
    """Share of episodes held out (at least one)."""
    patience: int = 5
    """Stop after this many epochs without a held-out improvement (0 = never stop early)."""
    min_delta: float = 0.0
    """Smallest decrease of the held-out loss that counts as an improvement."""
    seed: int = 0
    """Seeds the model initialisation, the split, the batch order and the latent draws."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train (and encode): auto picks CUDA when available."""
    threads: int | None = None
    """torch intra-op threads (default: torch's choice)."""
    resume: bool = False
    """Continue the run in --out from its last completed epoch."""
    tensorboard: bool = True
    """Write TensorBoard scalars under RUN_DIR/tb."""
    progress: bool = True
    """Show progress bars."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class _Batch:
    """Whole episodes, padded to the longest: ``T`` steps, ``T + 1`` latents."""

    mu: torch.Tensor
    """``(B, T + 1, z)``"""
    logvar: torch.Tensor
    """``(B, T + 1, z)``"""
    actions: torch.Tensor
    """``(B, T, a)`` float action vectors."""
    rewards: torch.Tensor
    """``(B, T)``"""
    ends: torch.Tensor
    """``(B, T)`` 1.0 where the episode terminates."""
    mask: torch.Tensor
    """``(B, T)`` bool: real steps (not padding)."""
    lengths: torch.Tensor
    """``(B,)`` steps per episode."""


def _load_batch(
    latents: LatentSequences, rows: np.ndarray, model: MDNRNN, device: torch.device, steps: int | None = None
) -> _Batch:
    """Episodes ``rows`` padded to ``steps`` steps (default: the longest of them)."""
    episodes = [latents.episode(int(r)) for r in rows]
    lengths = np.array([len(ep.rewards) for ep in episodes], np.int64)
    b, t, z = len(rows), steps or int(lengths.max()), latents.latent_dim
    mu, logvar = np.zeros((b, t + 1, z), np.float32), np.zeros((b, t + 1, z), np.float32)
    actions = np.zeros((b, t, *latents.action_shape), latents.action_dtype)
    rewards, ends = np.zeros((b, t), np.float32), np.zeros((b, t), np.float32)
    for i, ep in enumerate(episodes):
        n = lengths[i]
        mu[i, : n + 1], logvar[i, : n + 1] = ep.mu, ep.logvar
        actions[i, :n], rewards[i, :n], ends[i, :n] = ep.actions, ep.rewards, ep.terminated
    mask = np.arange(t)[None] < lengths[:, None]  # (B, T)
    as_tensor = lambda x: torch.from_numpy(x).to(device)  # noqa: E731
    return _Batch(as_tensor(mu), as_tensor(logvar), _action_vectors(model, actions, (b, t)).to(device),
                  as_tensor(rewards), as_tensor(ends), as_tensor(mask), as_tensor(lengths))  # fmt: skip


def _action_vectors(model: MDNRNN, actions: np.ndarray, lead: tuple[int, ...]) -> torch.Tensor:
    """Float action vectors ``(*lead, a)`` of the stored actions ``(*lead, *action_shape)``."""
    if model.config.discrete_actions:
        return model.action_input(torch.from_numpy(np.asarray(actions)))
    return model.action_input(torch.from_numpy(np.asarray(actions).reshape(*lead, -1)))


def _memory_config(config: TrainMemoryConfig, latents: LatentSequences) -> MemoryConfig:
    shape, dtype = latents.action_shape, latents.action_dtype
    discrete = shape == () and np.issubdtype(dtype, np.integer)
    if discrete:
        largest = max(int(latents.episode(e).actions.max()) for e in range(latents.num_episodes))
        action_dim = config.action_dim or largest + 1
        if largest >= action_dim:
            raise TrainMemoryError(
                f"--action-dim {config.action_dim} is too small: the data holds action {largest}; use at least "
                f"{largest + 1}"
            )
    else:
        action_dim = math.prod(shape)
        if config.action_dim is not None and config.action_dim != action_dim:
            raise TrainMemoryError(
                f"--action-dim {config.action_dim} does not match the data's continuous actions of shape {shape} "
                f"({action_dim} values); drop --action-dim"
            )
    if action_dim == 0:
        raise TrainMemoryError(f"{latents.path} stores empty actions (shape {shape}); the memory model needs actions")
    return MemoryConfig(
        latent_dim=latents.latent_dim,
        action_dim=action_dim,
        discrete_actions=discrete,
        hidden=config.hidden,
        mixtures=config.mixtures,
        reward_weight=config.reward_weight,
        end_weight=config.end_weight,
    )


def _split(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted episode rows ``(train, val)``: at least one of each."""
    if num_episodes < 2:
        raise TrainMemoryError(f"the data holds {num_episodes} episode; holding some out needs at least 2")
    if not 0.0 < val_fraction < 1.0:
        raise TrainMemoryError(f"--val-fraction must lie in (0, 1), got {val_fraction}")
    n_val = min(max(round(val_fraction * num_episodes), 1), num_episodes - 1)
    is_val = np.zeros(num_episodes, bool)
    is_val[np.random.default_rng(seed).permutation(num_episodes)[:n_val]] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _epoch_plan(train: np.ndarray, config: TrainMemoryConfig, epoch: int) -> list[np.ndarray]:
    """The batches of episode rows of ``epoch``, drawn from ``(seed, epoch)`` alone."""
    perm = np.random.default_rng([config.seed, epoch]).permutation(train)
    return [perm[i : i + config.batch_size] for i in range(0, len(perm), config.batch_size)]


def _windows(batch_rows: np.ndarray, lengths: np.ndarray, seq_len: int) -> int:
    return math.ceil(int(lengths[batch_rows].max()) / seq_len)


def _shard(rows: np.ndarray, ctx: DistContext) -> tuple[np.ndarray, bool]:
    """This rank's positions in the batch ``rows`` (every ``world_size``-th) and whether it has any.

    A rank left without one (a batch smaller than the world) reads the first episode masked out,
    so that it still takes part in every DDP step.
    """
    picks = np.arange(len(rows))[ctx.rank :: ctx.world_size]
    return (picks, True) if len(picks) else (np.zeros(1, np.int64), False)


# ---------------------------------------------------------------------------------------------
# Baselines and evaluation


@dataclass(frozen=True)
class _Baselines:
    """Per-dimension statistics of the training episodes' latent means, steps, rewards and ends."""

    step_rms: np.ndarray
    """``(z,)`` RMS of z_{t+1} - z_t: the copy baseline's scale."""
    mean: np.ndarray
    """``(z,)`` mean of z_{t+1}."""
    std: np.ndarray
    """``(z,)`` standard deviation of z_{t+1}."""
    reward_mean: float
    end_rate: float


def _fit_baselines(latents: LatentSequences, rows: np.ndarray) -> _Baselines:
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), BASELINE_MAX_EPISODES)).round().astype(np.int64)]
    z = latents.latent_dim
    n, sq_step, total, sq = 0, np.zeros(z), np.zeros(z), np.zeros(z)
    rewards, ends = [], []
    for row in rows:
        ep = latents.episode(int(row))
        mu = np.asarray(ep.mu, np.float64)
        n += len(mu) - 1
        sq_step += ((mu[1:] - mu[:-1]) ** 2).sum(0)
        total += mu[1:].sum(0)
        sq += (mu[1:] ** 2).sum(0)
        rewards.append(ep.rewards)
        ends.append(ep.terminated)
    mean = total / n
    return _Baselines(
        step_rms=np.maximum(np.sqrt(sq_step / n), MIN_STD),
        mean=mean,
        std=np.maximum(np.sqrt(np.maximum(sq / n - mean**2, 0.0)), MIN_STD),
        reward_mean=float(np.concatenate(rewards).mean()),
        end_rate=float(np.clip(np.concatenate(ends).mean(), 1e-6, 1 - 1e-6)),
    )


def _gaussian_nll(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x - mean) / std).pow(2) + torch.log(std) + 0.5 * math.log(2 * math.pi)


@torch.no_grad()
def _evaluate(
    model: MDNRNN, latents: LatentSequences, rows: np.ndarray, base: _Baselines, batch_size: int, ctx: DistContext
) -> dict[str, Any]:
    """Held-out metrics on the posterior means (see the module docstring); per-dimension NLLs as lists.

    Each rank evaluates every ``world_size``-th episode of ``rows``; the sums are added over all ranks.
    """
    device, rows = ctx.device, rows[ctx.rank :: ctx.world_size]
    model.eval()
    z = latents.latent_dim
    step_rms, mean, std = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in
                           (base.step_rms, base.mean, base.std))  # fmt: skip
    nll, nll_copy, nll_gauss = (torch.zeros(z, dtype=torch.float64) for _ in range(3))
    sums = dict.fromkeys(
        ("steps", "reward", "reward_base", "end", "end_base", "ends", "hits", "non_ends", "alarms"), 0.0
    )
    sq_err = {(k, which): 0.0 for k in OPEN_LOOP_HORIZONS for which in ("model", "copy")}
    counts = dict.fromkeys(OPEN_LOOP_HORIZONS, 0)
    for start in range(0, len(rows), batch_size):
        batch = _load_batch(latents, rows[start : start + batch_size], model, device)
        t = batch.mask.shape[1]
        out = model(batch.mu[:, :t], batch.actions)
        target, w = batch.mu[:, 1:], batch.mask.unsqueeze(-1).double()  # (B, T, z), (B, T, 1)
        nll += (-mixture_log_prob(out, target).double() * w).sum((0, 1)).cpu()
        nll_copy += (_gaussian_nll(target, batch.mu[:, :t], step_rms).double() * w).sum((0, 1)).cpu()
        nll_gauss += (_gaussian_nll(target, mean, std).double() * w).sum((0, 1)).cpu()
        m = batch.mask.double()
        end_prob = torch.sigmoid(out.end_logit.double())
        rate = torch.full_like(end_prob, base.end_rate)
        sums["steps"] += float(m.sum())
        sums["reward"] += float(((out.reward.double() - batch.rewards.double()).pow(2) * m).sum())
        sums["reward_base"] += float(((base.reward_mean - batch.rewards.double()).pow(2) * m).sum())
        sums["end"] += float((F.binary_cross_entropy(end_prob, batch.ends.double(), reduction="none") * m).sum())
        sums["end_base"] += float((F.binary_cross_entropy(rate, batch.ends.double(), reduction="none") * m).sum())
        sums["ends"] += float((batch.ends.double() * m).sum())
        sums["hits"] += float(((end_prob > 0.5) * batch.ends.double() * m).sum())
        sums["non_ends"] += float(((1 - batch.ends.double()) * m).sum())
        sums["alarms"] += float(((end_prob > 0.5) * (1 - batch.ends.double()) * m).sum())
        _open_loop(model, batch, sq_err, counts)
    model.train()
    nll, nll_copy, nll_gauss = (all_reduce_sum(v.to(device), ctx).cpu() for v in (nll, nll_copy, nll_gauss))
    sums, sq_err, counts = (all_reduce_values(d, ctx) for d in (sums, sq_err, counts))
    n = sums["steps"]
    result: dict[str, Any] = {
        "nll": float(nll.sum() / (n * z)),
        "nll_copy": float(nll_copy.sum() / (n * z)),
        "nll_gaussian": float(nll_gauss.sum() / (n * z)),
        "reward_mse": sums["reward"] / n,
        "reward_mse_mean": sums["reward_base"] / n,
        "end_bce": sums["end"] / n,
        "end_bce_rate": sums["end_base"] / n,
        "end_recall": sums["hits"] / sums["ends"] if sums["ends"] else None,
        "end_false_alarm": sums["alarms"] / sums["non_ends"] if sums["non_ends"] else None,
    }
    for k in OPEN_LOOP_HORIZONS:
        for which in ("model", "copy"):
            result[f"open_loop_{which}_rmse@{k}"] = math.sqrt(sq_err[k, which] / counts[k]) if counts[k] else None
    result["nll_per_dim"] = (nll / n).tolist()
    result["nll_copy_per_dim"] = (nll_copy / n).tolist()
    result["nll_gaussian_per_dim"] = (nll_gauss / n).tolist()
    return result


def _open_loop(model: MDNRNN, batch: _Batch, sq_err: dict, counts: dict) -> None:
    """Add the squared errors of open-loop rollouts from every ``OPEN_LOOP_STRIDE``-th step of ``batch``."""
    t, horizon = batch.mask.shape[1], max(OPEN_LOOP_HORIZONS)
    state, done = None, 0
    for t0 in range(0, t, OPEN_LOOP_STRIDE):
        if t0 > done:  # teacher-forced up to t0: the state after z_{t0-1}, a_{t0-1}
            state = model(batch.mu[:, done:t0], batch.actions[:, done:t0], state).state
            done = t0
        z_hat = dream(model, batch.mu[:, t0], batch.actions[:, t0 : t0 + horizon], state)  # (B, K, z)
        for k in OPEN_LOOP_HORIZONS:
            if k > z_hat.shape[1]:
                break
            valid = (batch.lengths >= t0 + k).double()  # (B,)
            real = batch.mu[:, t0 + k]  # (B, z)
            sq_err[k, "model"] += float(((z_hat[:, k - 1] - real).double().pow(2).mean(-1) * valid).sum())
            sq_err[k, "copy"] += float(((batch.mu[:, t0] - real).double().pow(2).mean(-1) * valid).sum())
            counts[k] += int(valid.sum())


@torch.no_grad()
def rollout_strip(
    model: MDNRNN, vae: ConvVAE, frames: np.ndarray, mu: np.ndarray, actions: torch.Tensor, start: int, steps: int
) -> np.ndarray:
    """Three rows of ``steps`` frames after ``start``: the real frames, the VAE's decodings of their latent
    means, and the decodings of the memory model's open-loop rollout from ``start`` with the same actions.

    ``frames`` uint8 ``(T + 1, h, w, c)`` and ``mu`` ``(T + 1, z)`` are one episode's; ``actions`` its
    ``(T, a)`` action vectors. The model reads the real latents up to ``start``.
    """
    device = next(model.parameters()).device
    z = torch.as_tensor(np.array(mu), device=device).unsqueeze(0)  # (1, T + 1, z)
    a = actions.to(device).unsqueeze(0)  # (1, T, a)
    state = model(z[:, :start], a[:, :start]).state if start else None
    dreamt = dream(model, z[:, start], a[:, start : start + steps], state)[0]  # (K, z)
    real = z[0, start + 1 : start + 1 + steps]  # (K, z)
    return image_grid([np.asarray(frames[start + 1 : start + 1 + steps]), tensor_to_frames(vae.decode(real)),
                       tensor_to_frames(vae.decode(dreamt))])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(kw_only=True)
class _Run(RunCounters):
    """Counters of one run (see :class:`~worldmodel.training.run.RunCounters`)."""


def _latents_dir(config: TrainMemoryConfig, out: Path) -> Path:
    return Path(config.latents) if config.latents else out / "latents"


def _open_latents(config: TrainMemoryConfig, out: Path, vae_sha256: str, device: str) -> LatentSequences:
    latents_dir = _latents_dir(config, out)
    if config.data_dir is None:
        if config.latents is None:
            raise TrainMemoryError(
                "give a dataset directory DATA, or --latents with latents made by `worldmodel encode`"
            )
        return LatentSequences.open(latents_dir, vae_sha256=vae_sha256)
    return encode_dataset(config.data_dir, config.vae, latents_dir, device=device, progress=config.progress)


def train_memory(config: TrainMemoryConfig) -> Path:
    """Train a memory model as ``config`` says and return the path of the best checkpoint.

    Raises :class:`TrainMemoryError` for unusable inputs before training starts, and
    :class:`~worldmodel.training.run.NonFiniteLossError` if the loss becomes NaN/Inf (the last
    good checkpoint stays).
    """
    return run_on_ranks(functools.partial(_train, config), config.device)


def _train(config: TrainMemoryConfig, ctx: DistContext) -> Path:
    from tqdm import tqdm

    if config.threads:
        torch.set_num_threads(config.threads)
    if not Path(config.vae).is_file():
        raise TrainMemoryError(f"--vae {config.vae} does not exist; pass the VAE checkpoint the latents come from")
    out = check_run_dir(config.out, config.resume, TrainMemoryError)
    vae_sha256 = file_sha256(config.vae)
    if config.data_dir is not None:  # a missing or empty dataset, or another frame spec: refused before --out exists
        ds = FrameDataset.open(config.data_dir, verify="none")
        check_frame_spec(ds.frame_spec, read_frame_spec(config.vae), consumer=f"the VAE {config.vae}")
    if ctx.is_main:
        make_run_dir(out, TrainMemoryError)
        latents = _open_latents(config, out, vae_sha256, str(ctx.device))
    barrier(ctx)
    if not ctx.is_main:
        latents = LatentSequences.open(_latents_dir(config, out), vae_sha256=vae_sha256)
    train_rows, val_rows = _split(latents.num_episodes, config.val_fraction, config.seed)
    memory_config = _memory_config(config, latents)
    plans = [_epoch_plan(train_rows, config, e) for e in range(config.epochs)]
    total_steps = sum(_windows(rows, latents.lengths, config.seq_len) for plan in plans for rows in plan)
    torch.manual_seed(config.seed)
    model = MDNRNN(memory_config)
    run = _Run()
    saved: dict[str, Any] = {}
    optimizer_state = None
    if config.resume:
        model_state, optimizer_state, _, saved = load_resume_state(
            out / "resume.safetensors", format_name=RESUME_FORMAT, error=TrainMemoryError
        )
        _check_resumable(saved, memory_config, latents, vae_sha256)
        model.load_state_dict(model_state)
        run.restore(saved["counters"])
    model.to(ctx.device)
    module = wrap_ddp(model, ctx)
    optimizer, scheduler = adamw_with_schedule(model.parameters(), config, total_steps)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(saved["scheduler"])
    base = _fit_baselines(latents, train_rows)
    resolved = {"device": str(ctx.device), "total_steps": total_steps, "dataset_id": latents.dataset_id,
                "vae_sha256": vae_sha256, "memory_config": memory_config.to_dict(),
                "train_episodes": len(train_rows), "val_episodes": len(val_rows),
                "world_size": ctx.world_size}  # fmt: skip
    log = None
    if ctx.is_main:
        write_json_atomic(out / "config.json", {**config.to_dict(), "resolved": resolved})
        log = MetricsLog(out, tensorboard=config.tensorboard, resumed_epoch=run.epoch if config.resume else None,
                         resumed_step=run.step)  # fmt: skip
    start_time = time.perf_counter() - run.wall_s
    while run.epoch < config.epochs:
        bar = tqdm(total=sum(_windows(r, latents.lengths, config.seq_len) for r in plans[run.epoch]),
                   desc=f"epoch {run.epoch + 1}", unit="step", leave=False,
                   disable=not (config.progress and ctx.is_main), file=sys.stderr)  # fmt: skip
        train = _train_epoch(module, model, optimizer, scheduler, latents, plans[run.epoch], config, ctx, run, bar)
        bar.close()
        val = _evaluate(model, latents, val_rows, base, config.batch_size, ctx)
        val_total = val["nll"] + config.reward_weight * val["reward_mse"] + config.end_weight * val["end_bce"]
        check_finite({"total": val_total}, ctx, what="held-out loss", when=f"after epoch {run.epoch + 1}",
                     last=out / "last.safetensors")  # fmt: skip
        run.wall_s = time.perf_counter() - start_time
        improved = run.end_epoch(val_total, config.min_delta)
        record = {
            "epoch": run.epoch,
            "step": run.step,
            "lr": scheduler.get_last_lr()[0],
            **{f"train/{k}": v for k, v in train.items()},
            "val/total": val_total,
            **{f"val/{k}": v for k, v in val.items() if not k.endswith("per_dim")},
            "best": improved,
            "wall_s": run.wall_s,
        }
        if improved:
            run.best_metrics = {**record, **{f"val/{k}": v for k, v in val.items() if k.endswith("per_dim")}}
        if log is not None:
            meta = {"step": run.step, "epoch": run.epoch, "dataset_id": latents.dataset_id, "val_nll": val["nll"],
                    "val_loss": val_total}  # fmt: skip
            if improved:
                save_memory(out / "best.safetensors", model, vae_sha256=vae_sha256, **meta)
            save_memory(out / "last.safetensors", model, vae_sha256=vae_sha256, **meta)
            log.write(record)
            state = {"counters": run.counters(), "scheduler": scheduler.state_dict(), "dataset_id": latents.dataset_id,
                     "vae_sha256": vae_sha256, "memory_config": memory_config.to_dict()}  # fmt: skip
            # The commit point of the epoch: a kill before this line resumes from the previous epoch.
            save_resume_state(out / "resume.safetensors", model, optimizer, state, format_name=RESUME_FORMAT,
                              header={})  # fmt: skip
            print(f"epoch {run.epoch}: train nll {train['nll']:.3f}, held-out nll {val['nll']:.3f} (copy "
                  f"{val['nll_copy']:.3f}, gaussian {val['nll_gaussian']:.3f}) nats/dim"
                  + (" *best*" if improved else ""), file=sys.stderr, flush=True)  # fmt: skip
        barrier(ctx)
        if config.patience and any_rank(run.bad_epochs >= config.patience, ctx):
            if ctx.is_main:
                print(f"early stopping: no held-out improvement for {run.bad_epochs} epochs", file=sys.stderr)
            break
    if log is not None:
        log.close()
        if config.data_dir is not None:
            _write_rollout_png(out, config, latents, val_rows, ctx.device)
        _write_summary(out, run, latents, vae_sha256, ctx)
    return out / "best.safetensors"


def _check_resumable(saved: dict[str, Any], memory_config: MemoryConfig, latents: LatentSequences, sha: str) -> None:
    pairs = {
        "memory config": (MemoryConfig.from_dict(saved["memory_config"]), memory_config),
        "latents (dataset id)": (saved["dataset_id"], latents.dataset_id),
        "VAE SHA-256": (saved["vae_sha256"], sha),
    }
    for what, (before, now) in pairs.items():
        if before != now:
            raise TrainMemoryError(
                f"--resume: the run was trained with {what} {before}, but now it is {now}; resume with the original "
                "data, VAE and settings, or start a new run in another --out"
            )


def _train_epoch(
    module: torch.nn.Module,
    model: MDNRNN,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    latents: LatentSequences,
    plan: list[np.ndarray],
    config: TrainMemoryConfig,
    ctx: DistContext,
    run: _Run,
    bar: Any,
) -> dict[str, float]:
    """One pass over the batches of ``plan``, a truncated-BPTT window per optimiser step; mean train metrics.

    ``module`` is ``model``, or ``model`` in DDP; each rank reads its :func:`_shard` of every batch.
    """
    sums = torch.zeros(5, dtype=torch.float64)  # total, nll, reward, end (weighted by steps), steps
    start = time.perf_counter()
    for rows in plan:
        picks, has_rows = _shard(rows, ctx)
        lengths = latents.lengths[rows]
        t = int(lengths.max())
        batch = _load_batch(latents, rows[picks], model, ctx.device, t)
        mask = batch.mask if has_rows else torch.zeros_like(batch.mask)  # (b, T)
        z = batch.mu
        if config.sample_latents:  # one draw for the whole batch, as in a single process
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + run.step)
            noise = torch.randn((len(rows), t + 1, z.shape[-1]), generator=gen)[picks]  # (b, T+1, z)
            z = z + noise.to(ctx.device) * torch.exp(0.5 * batch.logvar)
        state = None
        for s in range(0, t, config.seq_len):
            e = min(s + config.seq_len, t)
            out = module(z[:, s:e], batch.actions[:, s:e], state)
            loss = memory_loss(out, z[:, s + 1 : e + 1], batch.rewards[:, s:e], batch.ends[:, s:e], model.config,
                               mask[:, s:e])  # fmt: skip
            steps = float(mask[:, s:e].sum())
            # DDP averages the ranks' gradients: weighting each rank's mean by its share of the window's steps
            # makes that average the gradient of the whole batch's mean (a factor of exactly 1 in one process).
            share = steps * ctx.world_size / float(np.clip(lengths - s, 0, e - s).sum())
            values = torch.stack([loss.total, loss.nll, loss.reward, loss.end]).detach().double().cpu()
            check_finite(dict(zip(("total", "nll", "reward", "end"), values.tolist(), strict=True)), ctx,
                         what="training loss", when=f"at step {run.step} (epoch {run.epoch + 1})",
                         last=Path(config.out) / "last.safetensors")  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            (loss.total * share).backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            run.step += 1
            sums += torch.cat([values * steps, torch.tensor([steps], dtype=torch.float64)])
            state = (out.state[0].detach(), out.state[1].detach())
            bar.update()
    elapsed = time.perf_counter() - start
    sums = all_reduce_sum(sums.to(ctx.device), ctx).cpu()
    weight = float(sums[4])
    sums /= max(weight, 1.0)
    return {"total": float(sums[0]), "nll": float(sums[1]), "reward": float(sums[2]), "end": float(sums[3]),
            "env_steps_per_s": weight / elapsed}  # fmt: skip


def _write_rollout_png(
    out: Path, config: TrainMemoryConfig, latents: LatentSequences, val_rows: np.ndarray, device: torch.device
) -> None:
    """``rollout.png``: :func:`rollout_strip` of the best model on the longest held-out episode."""
    row = int(val_rows[np.argmax(latents.lengths[val_rows])])
    length = int(latents.lengths[row])
    start = min(STRIP_START, length - 1)
    model = load_memory(out / "best.safetensors", device).model
    vae = load_vae(config.vae, device=device).vae
    episode = latents.episode(row)
    frames = FrameDataset.open(config.data_dir).episode(row).frames
    actions = _action_vectors(model, episode.actions, (length,))
    write_png(out / "rollout.png", rollout_strip(model, vae, frames, episode.mu, actions, start, STRIP_STEPS))


def _write_summary(out: Path, run: _Run, latents: LatentSequences, vae_sha256: str, ctx: DistContext) -> None:
    m = run.best_metrics
    summary = {
        "best_checkpoint": str(out / "best.safetensors"),
        "best_epoch": run.best_epoch + 1,
        "epochs": run.epoch,
        "steps": run.step,
        **{k.removeprefix("val/"): v for k, v in m.items() if k.startswith("val/")},
        "train_env_steps_per_s": m["train/env_steps_per_s"],
        "wall_s": run.wall_s,
        "latents": str(latents.path),
        "dataset_id": latents.dataset_id,
        "vae_sha256": vae_sha256,
        "device": str(ctx.device),
        "world_size": ctx.world_size,
    }
    write_json_atomic(out / "summary.json", summary)
    print(
        f"best checkpoint {summary['best_checkpoint']} (epoch {summary['best_epoch']}): held-out NLL "
        f"{summary['nll']:.3f} nats/dim against {summary['nll_copy']:.3f} (copy last) and "
        f"{summary['nll_gaussian']:.3f} (gaussian)",
        file=sys.stderr,
    )


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel train-memory``."""
    add_config_arguments(parser, TrainMemoryConfig, positional=("data_dir",))


def run(args: argparse.Namespace) -> int:
    """``worldmodel train-memory DATA --vae CKPT --out RUN [...]`` (also under ``torchrun``)."""
    config = config_from_args(TrainMemoryConfig, args)
    try:
        path = train_memory(config)
    except (TrainError, LatentsError, DatasetError, CheckpointError, NonFiniteLossError) as exc:
        print(f"worldmodel train-memory: error: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, NonFiniteLossError) else 1
    if is_main_process():
        print(path)
    return 0
