"""Train the memory model on a dataset's latents: ``worldmodel train-memory DATA --vae CKPT --out RUN``.

The dataset is first encoded with the VAE into ``RUN/latents`` (or ``--latents DIR``;
resumable, see :mod:`worldmodel.memory.sequences`). Episodes are split into training and
held-out ones. Each batch takes whole training episodes (padded, the padding masked out of
the loss) and walks them in windows of ``seq_len`` steps: one AdamW step per window, the
LSTM state carried from window to window and detached (truncated backpropagation through
time). It reads the posterior means, as the agents' wrappers do (``--sample-latents``: latents
drawn from each frame's posterior, as World Models; where the posterior is broad, those draws
are mostly noise). A new run starts as the baselines
(:meth:`~worldmodel.memory.model.MDNRNN.start_as_copy`: copy-last at each dimension's scale, the
RMS of its steps in the training episodes; the mean reward; the end rate), so latent dimensions
of very different scales start right.

Held-out diagnostics, every epoch, on the posterior means (:mod:`worldmodel.memory.evaluate`):
the mixture NLL per latent dimension against a *copy* and a *gaussian* baseline, open-loop
next-latent RMSE at 1, 5 and 20 steps, reward MSE and episode-end BCE.

RUN_DIR holds ``best.safetensors`` and ``last.safetensors`` (memory checkpoints tied to the
VAE's SHA-256), ``resume.safetensors``, ``config.json``, ``metrics.jsonl``, ``summary.json``,
``tb/`` and, when trained from DATA, ``rollout.png``
(:func:`~worldmodel.memory.evaluate.rollout_strip`: real frames, their VAE decodings and the
decodings of an open-loop rollout from the same start and actions).
It keeps the guarantees of ``train-vae`` (:mod:`worldmodel.training.loop`): a run killed at any
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

from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.data.format import DatasetError, check_frame_spec
from worldmodel.data.reader import FrameDataset
from worldmodel.memory.batch import action_vectors, load_batch
from worldmodel.memory.evaluate import Baselines, evaluate, fit_baselines, rollout_strip
from worldmodel.memory.model import MDNRNN, MemoryConfig, load_memory, memory_loss, save_memory
from worldmodel.memory.sequences import LatentSequences, LatentsError, encode_dataset
from worldmodel.training.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    is_main_process,
    run_on_ranks,
    wrap_ddp,
)
from worldmodel.training.loop import Trainer, Validation, epoch_rng
from worldmodel.training.run import (
    NonFiniteLossError,
    ResumeState,
    RunCounters,
    TrainError,
    check_run_dir,
    load_resume_state,
    make_run_dir,
)
from worldmodel.vae.checkpoint import CheckpointError, file_sha256, load_vae
from worldmodel.vae.diagnostics import write_png

COMMAND_HELP = "train the memory model (MDN-RNN) on a dataset's VAE latents"
"""One line for ``worldmodel --help``."""

RESUME_FORMAT = "worldmodel.memory_train_state"
STRIP_START = 10
"""The rollout strip's model reads this many real latents before it dreams on."""
STRIP_STEPS = 20


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
    sample_latents: bool = False
    """Train on latents drawn from each frame's posterior, as World Models; else on the posterior means, which
    the agents read and the held-out diagnostics score."""
    start_as_copy: bool = True
    """Start a new run as the copy-last baseline, each dimension at the scale of its steps
    (``--no-start-as-copy``: PyTorch's default initialisation)."""
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
    perm = epoch_rng(config.seed, epoch).permutation(train)
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
# Training


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
    if config.threads:
        torch.set_num_threads(config.threads)
    if not Path(config.vae).is_file():
        raise TrainMemoryError(f"--vae {config.vae} does not exist; pass the VAE checkpoint the latents come from")
    out, resume_file = check_run_dir(config.out, config.resume, TrainMemoryError)
    vae_sha256 = file_sha256(config.vae)
    vae_spec = load_vae(config.vae).frame_spec  # damaged weights (a bad checksum, NaN) refused before --out exists
    if config.data_dir is not None:  # a missing or empty dataset, or another frame spec: refused before --out exists
        ds = FrameDataset.open(config.data_dir, verify="none")
        check_frame_spec(ds.frame_spec, vae_spec, consumer=f"the VAE {config.vae}")
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
    base = fit_baselines(latents, train_rows)
    if config.start_as_copy:
        model.start_as_copy(torch.from_numpy(base.step_rms), base.reward_mean, base.end_rate)
    run = RunCounters()
    resumed = None
    if resume_file is not None:
        resumed = load_resume_state(resume_file, format_name=RESUME_FORMAT, error=TrainMemoryError)
        _check_resumable(resumed.state, memory_config, latents, vae_sha256)
        resumed.restore_model(model, run)
    model.to(ctx.device)
    resolved = {"device": str(ctx.device), "total_steps": total_steps, "dataset_id": latents.dataset_id,
                "vae_sha256": vae_sha256, "memory_config": memory_config.to_dict(),
                "train_episodes": len(train_rows), "val_episodes": len(val_rows),
                "world_size": ctx.world_size}  # fmt: skip
    trainer = _MemoryTrainer(config, ctx, run, model, latents, plans, base, val_rows,
                             vae_sha256, total_steps=total_steps, resolved=resolved, resumed=resumed)  # fmt: skip
    return trainer.fit()


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


class _MemoryTrainer(Trainer):
    """The memory model's parts of the epoch loop (:class:`~worldmodel.training.loop.Trainer`)."""

    resume_format = RESUME_FORMAT
    held_out = "held-out"
    config: TrainMemoryConfig
    model: MDNRNN

    def __init__(
        self,
        config: TrainMemoryConfig,
        ctx: DistContext,
        run: RunCounters,
        model: MDNRNN,
        latents: LatentSequences,
        plans: list[list[np.ndarray]],
        base: Baselines,
        val_rows: np.ndarray,
        vae_sha256: str,
        *,
        total_steps: int,
        resolved: dict[str, Any],
        resumed: ResumeState | None,
    ) -> None:
        super().__init__(config, ctx, run, model, num_epochs=config.epochs, total_steps=total_steps,
                         resolved=resolved, resumed=resumed, grad_clip=config.grad_clip)  # fmt: skip
        self.module = wrap_ddp(model, ctx)
        self.latents, self.plans, self.base, self.val_rows, self.vae_sha256 = latents, plans, base, val_rows, vae_sha256

    def train_epoch(self) -> dict[str, float]:
        """One pass over this epoch's batches, a truncated-BPTT window per optimiser step; mean train metrics.

        ``self.module`` is the model, or the model in DDP; each rank reads its :func:`_shard` of every batch.
        """
        config, ctx, model, latents, plan = self.config, self.ctx, self.model, self.latents, self.plans[self.run.epoch]
        bar = self.progress_bar(sum(_windows(rows, latents.lengths, config.seq_len) for rows in plan))
        sums = torch.zeros(5, dtype=torch.float64)  # total, nll, reward, end (weighted by steps), steps
        start = time.perf_counter()
        for rows in plan:
            picks, has_rows = _shard(rows, ctx)
            lengths = latents.lengths[rows]
            t = int(lengths.max())
            batch = load_batch(latents, rows[picks], model, ctx.device, t)
            mask = batch.mask if has_rows else torch.zeros_like(batch.mask)  # (b, T)
            z = batch.mu
            if config.sample_latents:  # one draw for the whole batch, as in a single process
                noise = torch.randn((len(rows), t + 1, z.shape[-1]), generator=self.step_generator())[picks]
                z = z + noise.to(ctx.device) * torch.exp(0.5 * batch.logvar)  # (b, T+1, z)
            state = None
            for s in range(0, t, config.seq_len):
                e = min(s + config.seq_len, t)
                out = self.module(z[:, s:e], batch.actions[:, s:e], state)
                loss = memory_loss(out, z[:, s + 1 : e + 1], batch.rewards[:, s:e], batch.ends[:, s:e], model.config,
                                   mask[:, s:e])  # fmt: skip
                steps = float(mask[:, s:e].sum())
                # DDP averages the ranks' gradients: weighting each rank's mean by its share of the window's steps
                # makes that average the gradient of the whole batch's mean (a factor of exactly 1 in one process).
                share = steps * ctx.world_size / float(np.clip(lengths - s, 0, e - s).sum())
                values = torch.stack([loss.total, loss.nll, loss.reward, loss.end]).detach().double().cpu()
                self.check_step(("total", "nll", "reward", "end"), values)
                self.optimizer_step(loss.total * share)
                sums += torch.cat([values * steps, torch.tensor([steps], dtype=torch.float64)])
                state = (out.state[0].detach(), out.state[1].detach())
                bar.update()
        elapsed = time.perf_counter() - start
        bar.close()
        sums = all_reduce_sum(sums.to(ctx.device), ctx).cpu()
        weight = float(sums[4])
        sums /= max(weight, 1.0)
        return {"total": float(sums[0]), "nll": float(sums[1]), "reward": float(sums[2]), "end": float(sums[3]),
                "env_steps_per_s": weight / elapsed}  # fmt: skip

    def validate(self) -> Validation:
        """The held-out diagnostics (:mod:`worldmodel.memory.evaluate`); the loss weighs them as training does."""
        config = self.config
        val = evaluate(self.model, self.latents, self.val_rows, self.base, config.batch_size, self.ctx)
        total = val["nll"] + config.reward_weight * val["reward_mse"] + config.end_weight * val["end_bce"]
        metrics = {"val/total": total, **{f"val/{k}": v for k, v in val.items() if not k.endswith("per_dim")}}
        return Validation(total, metrics, best_only={f"val/{k}": v for k, v in val.items() if k.endswith("per_dim")})

    def save_epoch(self, record: dict[str, Any], improved: bool) -> dict[str, np.ndarray]:
        """Write the memory checkpoints, tied to the VAE's SHA-256."""
        meta = {"step": record["step"], "epoch": record["epoch"], "dataset_id": self.latents.dataset_id,
                "val_nll": record["val/nll"], "val_loss": record["val/total"]}  # fmt: skip
        if improved:
            save_memory(self.out / "best.safetensors", self.model, vae_sha256=self.vae_sha256, **meta)
        save_memory(self.out / "last.safetensors", self.model, vae_sha256=self.vae_sha256, **meta)
        return {}

    def resume_state(self) -> dict[str, Any]:
        return {"dataset_id": self.latents.dataset_id, "vae_sha256": self.vae_sha256,
                "memory_config": self.model.config.to_dict()}  # fmt: skip

    def epoch_message(self, record: dict[str, Any]) -> str:
        return (f"epoch {record['epoch']}: train nll {record['train/nll']:.3f}, held-out nll {record['val/nll']:.3f} "
                f"(copy {record['val/nll_copy']:.3f}, gaussian {record['val/nll_gaussian']:.3f}) nats/dim")  # fmt: skip

    def finish(self) -> None:
        """``rollout.png`` when trained from DATA, then ``summary.json``."""
        if self.config.data_dir is not None:
            self._write_rollout_png()
        m, run, latents = self.run.best_metrics, self.run, self.latents
        summary = self.write_summary({
            **{k.removeprefix("val/"): v for k, v in m.items() if k.startswith("val/")},
            "train_env_steps_per_s": m["train/env_steps_per_s"],
            "wall_s": run.wall_s,
            "latents": str(latents.path),
            "dataset_id": latents.dataset_id,
            "vae_sha256": self.vae_sha256,
            "device": str(self.ctx.device),
            "world_size": self.ctx.world_size,
        })  # fmt: skip
        self.message(
            f"best checkpoint {summary['best_checkpoint']} (epoch {summary['best_epoch']}): held-out NLL "
            f"{summary['nll']:.3f} nats/dim against {summary['nll_copy']:.3f} (copy last) and "
            f"{summary['nll_gaussian']:.3f} (gaussian)"
        )

    def _write_rollout_png(self) -> None:
        """``rollout.png``: :func:`rollout_strip` of the best model on the longest held-out episode."""
        latents, device, val_rows = self.latents, self.ctx.device, self.val_rows
        row = int(val_rows[np.argmax(latents.lengths[val_rows])])
        length = int(latents.lengths[row])
        start = min(STRIP_START, length - 1)
        model = load_memory(self.out / "best.safetensors", device).model
        vae = load_vae(self.config.vae, device=device).vae
        episode = latents.episode(row)
        frames = FrameDataset.open(self.config.data_dir).episode(row).frames
        actions = action_vectors(model, episode.actions, (length,))
        write_png(self.out / "rollout.png", rollout_strip(model, vae, frames, episode.mu, actions, start, STRIP_STEPS))


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
