"""Train the VAE on a collected dataset: ``worldmodel train-vae DATA_DIR --out RUN_DIR``.

One library function, :func:`train_vae`, driven by :class:`TrainVAEConfig`; the same
command scales out under ``torchrun --standalone --nproc_per_node N`` with
DistributedDataParallel (each rank gathers its own share of every global batch; rank 0
writes checkpoints and logs).

Speed on a CPU comes from large batches in channels-last memory format, a background
thread gathering the next batch from the memory-mapped shards while the model trains,
and (where the CPU has native bf16) bf16 autocast; the loss is always computed in fp32.

All randomness after model initialisation (epoch order, reparameterisation noise,
flips) is drawn from generators seeded by ``(seed, epoch)`` or ``(seed, step)``, so a run
resumed from its last epoch boundary, or spread over several DDP ranks, draws exactly the
numbers an uninterrupted single-process run draws.

RUN_DIR holds ``best.safetensors`` and ``last.safetensors`` (VAE checkpoints with
:class:`~worldmodel.vae.checkpoint.LatentStats`), ``resume.safetensors`` (weights, AdamW
moments and, as JSON in its header, counters, scheduler and early-stopping state: no
pickle), ``config.json``, ``metrics.jsonl``, ``summary.json``, ``tb/`` (TensorBoard) and the
diagnostic PNGs ``recon.png``, ``samples.png``, ``traversal.png`` and ``kl.png``.

>>> import tempfile, numpy as np
>>> from worldmodel.data import DatasetWriter
>>> data, out = tempfile.mkdtemp(), tempfile.mkdtemp()
>>> with DatasetWriter(data, env_id="Demo-v0", frame_spec=FrameSpec(height=16, width=16)) as w:
...     for i in range(3):
...         f = np.random.default_rng(i).integers(0, 255, (9, 16, 16, 3), dtype=np.uint8)
...         w.add_episode(f, np.zeros((8, 1)), np.zeros(8), np.zeros(8, bool), np.zeros(8, bool),
...                       seed=i, episode_index=i)
>>> cfg = TrainVAEConfig(data, out=out + "/run", epochs=1, batch_size=4, latent_dim=4,
...                      width_multiplier=0.25, progress=False, figures=False, tensorboard=False)
>>> train_vae(cfg).name
'best.safetensors'
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.common.device import autocast_dtype, default_precision
from worldmodel.data.mixture import FrameMixture, mixed_order
from worldmodel.data.reader import FrameDataset
from worldmodel.frames import FrameSpec, frames_to_tensor
from worldmodel.training.distributed import DistContext, all_reduce_sum, is_main_process, run_on_ranks, wrap_ddp
from worldmodel.training.loop import Trainer, Validation, epoch_rng
from worldmodel.training.prefetch import BatchPrefetcher
from worldmodel.training.run import NonFiniteLossError as NonFiniteLossError  # train_vae raises it: import it from here
from worldmodel.training.run import (
    ResumeState,
    RunCounters,
    autocast,
    check_run_dir,
    load_resume_state,
    make_run_dir,
    spread,
)
from worldmodel.vae.checkpoint import load_vae, save_vae
from worldmodel.vae.diagnostics import (
    kl_bar_chart,
    latent_traversal,
    linear_probe_r2,
    prior_samples,
    reconstruction_grid,
    write_png,
)
from worldmodel.vae.evaluate import (
    FrameFeed,
    HeldOutLoss,
    encode_means,
    evaluate,
    latent_moments,
    split_previous,
    with_previous_frames,
)
from worldmodel.vae.latent_stats import ACTIVE_THRESHOLD
from worldmodel.vae.model import ConvVAE, VAEConfig, vae_loss
from worldmodel.vae.train_config import TrainVAEConfig, TrainVAEError

COMMAND_HELP = "train the VAE on a collected dataset (also under torchrun for DDP)"
"""One line for ``worldmodel --help``."""

RESUME_FORMAT = "worldmodel.train_state"
COLLAPSE_FRACTION = 0.5
"""Warn of posterior collapse when more than this share of dimensions is inactive."""
FIGURE_FRAMES = 8
PROBE_MAX_FRAMES = 4096
_ARCH_FIELDS = ("height", "width", "channels", "latent_dim", "width_multiplier")


class PosteriorCollapseWarning(UserWarning):
    """Most latent dimensions carry (almost) no information about the input."""


# ---------------------------------------------------------------------------------------------
# Model step


class _SampledVAE(nn.Module):
    """The VAE forward pass with externally drawn noise, so DDP ranks can share one global draw."""

    def __init__(self, vae: ConvVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.vae.encode(x)  # (B, z) each
        z = mu + eps * torch.exp(0.5 * logvar)  # (B, z)
        return self.vae.decode(z), mu, logvar


def default_batch_size(device: torch.device, precision: str) -> int:
    """128 on a GPU or with reduced precision; 64 for fp32 on a CPU.

    An fp32 CPU step costs about the same per image at batch 64 as at 128, so the smaller
    batch makes twice the updates in the same time, which is what a short run needs
    (measured in ``experiments/reports/benchmarks/README.md``, train_vae section).

    >>> default_batch_size(torch.device("cpu"), "fp32"), default_batch_size(torch.device("cpu"), "bf16")
    (64, 128)
    """
    return 64 if device.type == "cpu" and precision == "fp32" else 128


# ---------------------------------------------------------------------------------------------
# Setup checks (all before any training)


def _open_dataset(config: TrainVAEConfig) -> FrameMixture:
    datasets = []
    for data_dir in config.data_dirs:
        ds = FrameDataset.open(data_dir)  # raises DatasetError for a missing, empty or corrupt dataset
        if ds.num_episodes < 2:
            raise TrainVAEError(
                f"dataset {data_dir} holds {ds.num_episodes} episode; validation needs episodes held out, "
                "so collect at least 2 episodes"
            )
        datasets.append(ds)
    ds = FrameMixture(datasets, config.data_dirs)  # raises DatasetError when frame specs differ
    spec = ds.frame_spec
    if config.image_size is not None and (spec.height, spec.width) != (config.image_size, config.image_size):
        raise TrainVAEError(
            f"--image-size {config.image_size} does not match the dataset's frames of {spec.height}x{spec.width} "
            f"(HxW, frame spec {spec}); drop --image-size to use the dataset's size, or collect with the size you want"
        )
    return ds


def _vae_config(config: TrainVAEConfig, spec: FrameSpec) -> VAEConfig:
    try:
        return VAEConfig(
            height=spec.height,
            width=spec.width,
            channels=spec.channels,
            latent_dim=config.latent_dim,
            width_multiplier=config.width_multiplier,
            beta=config.beta,
            kl_tolerance=config.kl_tolerance,
            free_bits=config.free_bits,
            motion_weight=config.motion_weight,
        )
    except ValueError as exc:
        raise TrainVAEError(f"cannot build a VAE for the dataset's frames ({spec.shape}): {exc}") from exc


def _load_init(config: TrainVAEConfig, vae_config: VAEConfig, spec: FrameSpec) -> dict[str, torch.Tensor]:
    """The weights of the --init checkpoint, after checking its frame spec and architecture."""
    ckpt = load_vae(config.init)  # raises CheckpointError for a missing or unreadable file
    if ckpt.frame_spec != spec:
        raise TrainVAEError(
            f"--init {config.init} was trained on frames of {ckpt.frame_spec}, but the data holds frames of {spec}; "
            "fine-tune on data collected with the checkpoint's frame spec, or drop --init"
        )
    saved = ckpt.vae.config
    mismatch = [f"--{f.replace('_', '-')} {getattr(saved, f)}" for f in _ARCH_FIELDS if getattr(saved, f) != getattr(
        vae_config, f)]  # fmt: skip
    if mismatch:
        raise TrainVAEError(
            f"--init {config.init} has another architecture than the options ask for; pass {' '.join(mismatch)} "
            "to match it, or drop --init"
        )
    return ckpt.vae.state_dict()


def _check_resumable(saved: VAEConfig, current: VAEConfig, saved_state: dict[str, Any], dataset_id: str) -> None:
    mismatch = {
        f: (getattr(saved, f), getattr(current, f)) for f in _ARCH_FIELDS if getattr(saved, f) != getattr(current, f)
    }
    if mismatch:
        detail = ", ".join(f"{k}: saved {a} vs now {b}" for k, (a, b) in mismatch.items())
        raise TrainVAEError(
            f"--resume: the run was trained with another architecture ({detail}); use the original settings "
            "or start a new run in another --out"
        )
    if saved_state["dataset_id"] != dataset_id:
        raise TrainVAEError(
            f"--resume: the run was trained on dataset {saved_state['dataset_id']}, but {dataset_id} was given; "
            "resume on the same dataset or start a new run"
        )


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(kw_only=True)
class _Run(RunCounters):
    """Resolved settings and mutable counters of one training run."""

    feed: FrameFeed
    precision: str
    init_val: list[dict[str, float]] | None = None
    """Per dataset, the --init checkpoint's held-out metrics before training."""

    def settings(self) -> tuple[str, ...]:
        return ("feed", "precision")


def train_vae(config: TrainVAEConfig) -> Path:
    """Train a VAE as ``config`` says and return the path of the best checkpoint.

    Under ``torchrun`` every rank calls this; each returns the same path once rank 0 has
    written it. Raises :class:`TrainVAEError` for unusable inputs before training starts,
    and :class:`NonFiniteLossError` if the loss becomes NaN/Inf (the last good checkpoint stays).
    """
    return run_on_ranks(functools.partial(_train, config), config.device)


def _train(config: TrainVAEConfig, ctx: DistContext) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    out, resume_file = check_run_dir(config.out, config.resume, TrainVAEError)
    ds = _open_dataset(config)
    vae_config = _vae_config(config, ds.frame_spec)
    precision = default_precision(ctx.device) if config.precision == "auto" else config.precision
    if config.batch_size is None:
        config = dataclasses.replace(config, batch_size=default_batch_size(ctx.device, precision))
    if config.batch_size % ctx.world_size:
        raise TrainVAEError(
            f"--batch-size {config.batch_size} must divide by the {ctx.world_size} ranks; use a multiple of it"
        )
    splits = ds.split_by_episode(config.val_fraction, seed=config.seed)
    train_idx = np.concatenate([train for train, _ in splits])
    if any(len(val) == 0 for _, val in splits):
        raise TrainVAEError(f"--val-fraction {config.val_fraction} holds out no episode; use a value above 0")
    steps_per_epoch = len(train_idx) // config.batch_size
    if steps_per_epoch == 0:
        raise TrainVAEError(
            f"the training split holds {len(train_idx)} frames, fewer than one batch of {config.batch_size}; "
            "lower --batch-size or collect more episodes"
        )
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    feed = FrameFeed(
        amp_dtype=autocast_dtype(precision, ctx.device),
        channels_last=config.channels_last,
        pin=ctx.device.type == "cuda",
    )
    run = _Run(feed=feed, precision=precision)

    torch.manual_seed(config.seed)
    vae = ConvVAE(vae_config)
    resumed = None
    if config.init and resume_file is not None and ctx.is_main:
        print(f"--init {config.init} ignored: --resume continues the run in {out} from its own weights",
              file=sys.stderr, flush=True)  # fmt: skip
    elif config.init:
        vae.load_state_dict(_load_init(config, vae_config, ds.frame_spec))
    if resume_file is not None:
        resumed = load_resume_state(resume_file, format_name=RESUME_FORMAT, error=TrainVAEError)
        saved_config = VAEConfig.from_dict(json.loads(resumed.header["vae_config"]))
        _check_resumable(saved_config, vae_config, resumed.state, ds.dataset_id)
        resumed.restore_model(vae, run)
    make_run_dir(out, TrainVAEError)
    vae.to(ctx.device)
    if config.channels_last:
        vae.to(memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
    if resumed is not None and resumed.state["scaler"]:
        scaler.load_state_dict(resumed.state["scaler"])
    resolved = {"device": str(ctx.device), "precision": precision, "world_size": ctx.world_size,
                "total_steps": total_steps, "dataset_id": ds.dataset_id,
                "vae_config": vae_config.to_dict()}  # fmt: skip
    trainer = _VAETrainer(config, ctx, run, vae, ds, splits, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                          resolved=resolved, resumed=resumed, scaler=scaler)  # fmt: skip
    return trainer.fit()


class _VAETrainer(Trainer):
    """The VAE's parts of the epoch loop (:class:`~worldmodel.training.loop.Trainer`)."""

    resume_format = RESUME_FORMAT
    config: TrainVAEConfig
    run: _Run

    def __init__(
        self,
        config: TrainVAEConfig,
        ctx: DistContext,
        run: _Run,
        vae: ConvVAE,
        ds: FrameMixture,
        splits: list[tuple[np.ndarray, np.ndarray]],
        *,
        steps_per_epoch: int,
        total_steps: int,
        resolved: dict[str, Any],
        resumed: ResumeState | None,
        scaler: torch.amp.GradScaler,
    ) -> None:
        super().__init__(config, ctx, run, vae, num_epochs=math.ceil(total_steps / steps_per_epoch),
                         total_steps=total_steps, resolved=resolved, resumed=resumed, scaler=scaler)  # fmt: skip
        self.vae, self.ds, self.splits, self.steps_per_epoch = vae, ds, splits, steps_per_epoch
        self.module = wrap_ddp(_SampledVAE(vae), ctx)
        if config.compile:
            self.module = torch.compile(self.module)
        self.train_idx = np.concatenate([train for train, _ in splits])
        self.val_sels = [spread(val, config.val_max_frames) for _, val in splits]
        self.val_sel = np.concatenate(self.val_sels)
        mix = config.mix_weights
        weights = mix if mix is not None else tuple(float(len(sel)) for sel in self.val_sels)
        self.val_weights = tuple(w / sum(weights) for w in weights)
        self.stats_sel = spread(self.train_idx, config.stats_max_frames)
        self.eval_batch = max(config.batch_size // ctx.world_size, 64)
        if config.init and resumed is None:  # the starting point's held-out quality, per dataset
            run.init_val = [e.to_dict() for e in self._evaluate_each()]

    def _evaluate_each(self) -> list[HeldOutLoss]:
        """:func:`~worldmodel.vae.evaluate.evaluate` on each dataset's held-out selection, every rank its share."""
        return [evaluate(self.vae, self.ds, sel[self.ctx.rank :: self.ctx.world_size], self.eval_batch, self.run.feed,
                          self.ctx) for sel in self.val_sels]  # fmt: skip

    def _epoch_order(self, count: int) -> np.ndarray:
        """This epoch's order of training frames: a permutation, or ``count`` frames drawn as ``--mix`` says."""
        rng = epoch_rng(self.config.seed, self.run.epoch)
        mix = self.config.mix_weights
        if mix is None:
            return rng.permutation(self.train_idx)
        return mixed_order([train for train, _ in self.splits], mix, count, rng)

    def train_epoch(self) -> dict[str, float]:
        """One pass over this epoch's global batches; mean train metrics over all ranks."""
        config, ctx, run, vae, ds = self.config, self.ctx, self.run, self.vae, self.ds
        n_steps = min(self.steps_per_epoch, self.total_steps - run.step)
        global_batch, local_batch = config.batch_size, config.batch_size // ctx.world_size
        perm = self._epoch_order(n_steps * global_batch)
        lo = ctx.rank * local_batch
        # Sorted indices read the memory-mapped shards in order; each rank gathers only its share.
        batches = [
            np.sort(perm[i * global_batch : (i + 1) * global_batch])[lo : lo + local_batch] for i in range(n_steps)
        ]
        motion = vae.config.motion_weight > 0
        if motion:
            batches = with_previous_frames(ds, batches)
        sums = torch.zeros(3, dtype=torch.float64)  # recon, kl, total
        bar = self.progress_bar(n_steps)
        vae.train()
        start = time.perf_counter()
        with BatchPrefetcher(ds, batches, pin_memory=run.feed.pin) as prefetcher:
            for i, frames in enumerate(prefetcher):
                gen = self.step_generator()
                eps = torch.randn(global_batch, vae.config.latent_dim, generator=gen)[lo : lo + local_batch]  # (b, z)
                x = frames_to_tensor(frames, ds.frame_spec, ctx.device, channels_last=config.channels_last)
                weights = None
                if motion:
                    x, weights = split_previous(x, vae.config.motion_weight)  # (b, 1, h, w) weights
                if config.hflip:
                    flip = (torch.rand(global_batch, generator=gen) < 0.5)[lo : lo + local_batch].to(ctx.device)
                    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                    x = x.contiguous(
                        memory_format=torch.channels_last if config.channels_last else torch.contiguous_format
                    )
                    if weights is not None:
                        weights = torch.where(flip.view(-1, 1, 1, 1), weights.flip(3), weights)
                with autocast(ctx.device, run.feed.amp_dtype):
                    x_hat, mu, logvar = self.module(x, eps.to(ctx.device, non_blocking=True))
                loss = vae_loss(x, x_hat, mu, logvar, vae.config, weights)
                values = torch.stack([loss.recon, loss.kl, loss.total]).detach().double().cpu()  # one sync per step
                self.check_step(("recon", "kl", "total"), values)
                self.optimizer_step(loss.total)
                sums += values
                if bar.disable is False and (i % 10 == 0 or i == n_steps - 1):
                    rate = (i + 1) * global_batch / (time.perf_counter() - start)
                    bar.set_postfix(loss=f"{values[2]:.1f}", img_s=f"{rate:.0f}")
                bar.update()
            wait_s = prefetcher.wait_s
        elapsed = time.perf_counter() - start
        bar.close()
        sums = all_reduce_sum(sums.to(ctx.device), ctx).cpu() / (n_steps * ctx.world_size)
        wait = float(all_reduce_sum(torch.tensor([wait_s], dtype=torch.float64).to(ctx.device), ctx).item())
        return {
            "recon": float(sums[0]),
            "kl": float(sums[1]),
            "total": float(sums[2]),
            "images_per_s": n_steps * global_batch / elapsed,
            "data_wait_share": wait / ctx.world_size / elapsed,
        }

    def validate(self) -> Validation:
        """Held-out losses (mixed by the datasets' weights and per dataset) and the latent statistics."""
        vals = self._evaluate_each()
        val = HeldOutLoss.mixed(vals, self.val_weights)
        stats_sel = self.stats_sel[self.ctx.rank :: self.ctx.world_size]
        moments = latent_moments(self.vae, self.ds, stats_sel, self.eval_batch, self.run.feed, self.ctx)
        self.kl_per_dim, self.stats = moments.kl_per_dim, moments.to_stats()
        metrics = {
            "val/recon": val.recon,
            "val/kl": val.kl,
            "val/total": val.total,
            "val/mse_per_pixel": val.mse_per_pixel,
            "val/psnr": val.psnr,
            **{f"val/data{k}/{key}": value for k, v in enumerate(vals) for key, value in v.to_dict().items()},
            "latent/active_dims": int(self.stats.active.sum()),
        }
        return Validation(val.total, metrics)

    def save_epoch(self, record: dict[str, Any], improved: bool) -> dict[str, np.ndarray]:
        """Warn of posterior collapse; write the VAE checkpoints with latent statistics, and the figures."""
        stats, ds = self.stats, self.ds
        if 1.0 - stats.active.mean() > COLLAPSE_FRACTION:
            warnings.warn(
                f"posterior collapse: {int((~stats.active).sum())} of {len(stats.active)} latent dimensions carry "
                f"< {ACTIVE_THRESHOLD} nats of KL after epoch {record['epoch']}; lower --beta, or set --free-bits / "
                "--kl-tolerance",
                PosteriorCollapseWarning,
                stacklevel=2,
            )
        meta = {
            "step": record["step"],
            "epoch": record["epoch"],
            "dataset_id": ds.dataset_id,
            "env_id": ds.env_id,
            "val_loss": record["val/total"],
            "val_mse_per_pixel": record["val/mse_per_pixel"],
        }
        if improved:
            save_vae(self.out / "best.safetensors", self.vae, ds.frame_spec, latent_stats=stats, **meta)
        save_vae(self.out / "last.safetensors", self.vae, ds.frame_spec, latent_stats=stats, **meta)
        return self._figures() if self.config.figures else {}

    def resume_state(self) -> dict[str, Any]:
        scaler = self.scaler.state_dict() if self.scaler.is_enabled() else {}
        return {"scaler": scaler, "dataset_id": self.ds.dataset_id}

    def resume_header(self) -> dict[str, str]:
        return {"vae_config": json.dumps(self.vae.config.to_dict())}

    def epoch_message(self, record: dict[str, Any]) -> str:
        return (
            f"epoch {record['epoch']}: train {record['train/total']:.2f} val {record['val/total']:.2f} "
            f"(mse/pixel {record['val/mse_per_pixel']:.5f}, {record['latent/active_dims']} active dims) "
            f"{record['train/images_per_s']:.0f} img/s, data wait {100 * record['train/data_wait_share']:.1f}%"
        )

    def _figures(self) -> dict[str, np.ndarray]:
        vae, ds = self.vae, self.ds
        vae.eval()
        x = frames_to_tensor(ds.frames(spread(self.val_sel, FIGURE_FRAMES)), ds.frame_spec, self.ctx.device)
        images = {
            "recon": reconstruction_grid(vae, x),
            "samples": prior_samples(vae, 2 * FIGURE_FRAMES, torch.Generator().manual_seed(self.config.seed)),
            "traversal": latent_traversal(vae, x[:1], self.kl_per_dim),
            "kl": kl_bar_chart(self.kl_per_dim, ACTIVE_THRESHOLD),
        }
        vae.train()
        for name, image in images.items():
            write_png(self.out / f"{name}.png", image)
        return images

    def finish(self) -> None:
        """Write ``summary.json``: best-epoch metrics, a linear probe of the true states, and each dataset's."""
        ds, run, device, batch = self.ds, self.run, self.ctx.device, self.eval_batch
        best = load_vae(self.out / "best.safetensors", device=device)
        probe = None
        if ds.state_dim is not None:
            z_train_idx, z_val_idx = spread(self.train_idx, PROBE_MAX_FRAMES), spread(self.val_sel, PROBE_MAX_FRAMES)
            r2 = linear_probe_r2(
                encode_means(best.vae, ds, z_train_idx, batch, device),
                ds.states(z_train_idx),
                encode_means(best.vae, ds, z_val_idx, batch, device),
                ds.states(z_val_idx),
            )
            probe = [None if math.isnan(v) else float(v) for v in r2]
        m = run.best_metrics
        datasets = [
            {"data_dir": name, "dataset_id": d.dataset_id, "weight": w, "train_frames": len(train),
             "val_frames": len(sel)}
            for name, d, w, (train, _), sel in zip(ds.names, ds.datasets, self.val_weights, self.splits, self.val_sels,
                                                   strict=True)
        ]  # fmt: skip
        for k, entry in enumerate(datasets):
            entry.update({f"val_{key}": m[f"val/data{k}/{key}"] for key in ("total", "mse_per_pixel", "psnr")})
            if run.init_val is not None:
                entry.update({f"init_val_{key}": value for key, value in run.init_val[k].items()})
        summary = self.write_summary({
            "val_mse_per_pixel": m["val/mse_per_pixel"],
            "val_psnr_db": m["val/psnr"],
            "val_loss": m["val/total"],
            "active_dims": int(best.latent_stats.active.sum()) if best.latent_stats is not None else None,
            "latent_dim": best.vae.config.latent_dim,
            "linear_probe_r2": probe,
            "linear_probe_names": list(ds.state_names) if probe is not None and ds.state_names else None,
            "wall_s": run.wall_s,
            "images_per_s": m["train/images_per_s"],
            "data_wait_share": m["train/data_wait_share"],
            "val_frames": len(self.val_sel),
            "train_frames": len(self.train_idx),
            "dataset_id": ds.dataset_id,
            "datasets": datasets,
            "init": self.config.init,
            "device": str(device),
            "precision": run.precision,
            "world_size": self.ctx.world_size,
        })  # fmt: skip
        self.message(
            f"best checkpoint {summary['best_checkpoint']} (epoch {summary['best_epoch']}): held-out MSE per pixel "
            f"{summary['val_mse_per_pixel']:.5f}, PSNR {summary['val_psnr_db']:.1f} dB, "
            f"{summary['active_dims']}/{summary['latent_dim']} active dims"
        )


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``worldmodel train-vae``: one or more DATA_DIRs, then the config's options."""
    parser.add_argument("data_dirs", nargs="+", metavar="DATA_DIR",
                        help="dataset directories written by `worldmodel collect` (several: see --mix)")  # fmt: skip
    add_config_arguments(parser, TrainVAEConfig, skip=("data_dir", "more_data_dirs"))


def run(args: argparse.Namespace) -> int:
    """``worldmodel train-vae DATA_DIR [DATA_DIR ...] --out RUN_DIR [...]`` (also under ``torchrun``)."""
    first, *more = args.data_dirs
    config = config_from_args(TrainVAEConfig, args, data_dir=first, more_data_dirs=tuple(more))
    path = train_vae(config)
    if is_main_process():
        print(path)
    return 0
