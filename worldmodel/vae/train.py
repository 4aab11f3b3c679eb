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
>>> from worldmodel.data.dataset import DatasetWriter
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
import queue
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from worldmodel.common.atomic import write_json_atomic
from worldmodel.common.configargs import add_config_arguments, config_from_args
from worldmodel.common.device import autocast_dtype, default_precision
from worldmodel.data.dataset import FrameDataset
from worldmodel.data.mixture import FrameMixture, mixed_order
from worldmodel.frames import FrameSpec, frames_to_tensor
from worldmodel.training.distributed import (
    DistContext,
    all_reduce_sum,
    any_rank,
    barrier,
    is_main_process,
    run_on_ranks,
    wrap_ddp,
)
from worldmodel.training.run import (
    MetricsLog,
    RunCounters,
    TrainError,
    adamw_with_schedule,
    autocast,
    check_finite,
    check_run_dir,
    load_resume_state,
    make_run_dir,
    save_resume_state,
    spread,
)
from worldmodel.training.run import NonFiniteLossError as NonFiniteLossError  # train_vae raises it: import it from here
from worldmodel.vae.checkpoint import LatentStats, load_vae, save_vae
from worldmodel.vae.diagnostics import (
    kl_bar_chart,
    latent_traversal,
    linear_probe_r2,
    prior_samples,
    reconstruction_grid,
    write_png,
)
from worldmodel.vae.latent_stats import ACTIVE_THRESHOLD, LatentMoments, accumulate_latents
from worldmodel.vae.model import ConvVAE, VAEConfig, vae_loss

RESUME_FORMAT = "worldmodel.train_state"
COLLAPSE_FRACTION = 0.5
"""Warn of posterior collapse when more than this share of dimensions is inactive."""
FIGURE_FRAMES = 8
PROBE_MAX_FRAMES = 4096
_ARCH_FIELDS = ("height", "width", "channels", "latent_dim", "width_multiplier")


class TrainVAEError(TrainError):
    """A ``train-vae`` request that cannot run (bad data, size mismatch, unusable run directory, ...)."""


class PosteriorCollapseWarning(UserWarning):
    """Most latent dimensions carry (almost) no information about the input."""


@dataclass(frozen=True)
class TrainVAEConfig:
    """Settings of :func:`train_vae` (and the ``worldmodel train-vae`` command)."""

    data_dir: str
    """Dataset directory written by `worldmodel collect`."""
    out: str
    """Run directory for checkpoints, metrics and figures (created; must not hold a run unless --resume)."""
    more_data_dirs: tuple[str, ...] = ()
    """Further dataset directories trained on together with data_dir (same frame spec; see --mix)."""
    mix: str | None = None
    """Comma-separated share of each dataset in every epoch, e.g. 0.5,0.5 (default: in proportion to their frames)."""
    init: str | None = None
    """VAE checkpoint to start from (fine-tuning); its frame spec and architecture must match the data and options."""
    epochs: int = 20
    """Passes over the training episodes (an upper bound when early stopping triggers)."""
    steps: int | None = None
    """Total optimiser steps; when set it replaces --epochs."""
    batch_size: int | None = None
    """Frames per optimiser step, over all DDP ranks together (must divide by the number of ranks) (default: 64
    for fp32 on a CPU, 128 on a GPU or with bf16/fp16; see default_batch_size)."""
    lr: float = 2e-3
    """Peak learning rate of AdamW. After 600 steps at batch 64 on the CPU benchmark's data, held-out MSE per
    pixel was 0.00233 with lr 1e-3 (cosine to 5%), 0.00212 with 2e-3, 0.00202 with 2e-3 and ``min_lr_fraction``
    0.5 (the defaults), 0.00199 with 3e-3 and 0.5, and 0.00219 with a constant 2e-3."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay (at most a tenth of the run's steps)."""
    min_lr_fraction: float = 0.5
    """The cosine schedule decays to lr * min_lr_fraction at the last step."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    seed: int = 0
    """Seeds the model initialisation, the validation split and every random draw of training."""
    latent_dim: int = 32
    """Size of the latent vector z."""
    width_multiplier: float = 1.0
    """Scales the VAE's conv channels (1.0 = World Models' 32-64-128-256)."""
    beta: float = 1.0
    """Weight of the KL term."""
    free_bits: float = 0.0
    """Per-dimension KL floor in nats (0 = off)."""
    kl_tolerance: float = 0.0
    """World Models' KL floor per image, as a fraction of latent_dim nats (the paper used 0.5; 0 = off)."""
    image_size: int | None = None
    """Expected square frame size; must match the dataset's frame spec (default: take the dataset's)."""
    hflip: bool = False
    """Randomly flip training frames left-right (off by default: flipping changes what steering means)."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation (at least one episode)."""
    val_max_frames: int = 4096
    """Validate on at most this many held-out frames, evenly spread (0 = all)."""
    stats_max_frames: int = 4096
    """Compute latent statistics on at most this many training frames, evenly spread (0 = all)."""
    patience: int = 5
    """Stop after this many epochs without a validation improvement (0 = never stop early)."""
    min_delta: float = 0.0
    """Smallest decrease of the validation loss that counts as an improvement."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto picks CUDA when available."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast precision; auto = bf16 on CUDA and on CPUs with native bf16, else fp32. fp16 is CUDA-only."""
    channels_last: bool = True
    """Channels-last memory format (faster convolutions on CPUs and tensor cores)."""
    compile: bool = False
    """torch.compile the model (slow start; pays off on long runs)."""
    threads: int | None = None
    """torch intra-op threads per process (default: torch's choice)."""
    resume: bool = False
    """Continue the run in --out from its last completed epoch."""
    figures: bool = True
    """Write diagnostic PNGs (and TensorBoard images) every epoch."""
    tensorboard: bool = True
    """Write TensorBoard scalars and images under RUN_DIR/tb."""
    progress: bool = True
    """Show a progress bar per epoch."""

    @property
    def data_dirs(self) -> tuple[str, ...]:
        """Every dataset directory, data_dir first."""
        return (self.data_dir, *self.more_data_dirs)

    @property
    def mix_weights(self) -> tuple[float, ...] | None:
        """The --mix shares as numbers (None when not given); raises TrainVAEError for a malformed value."""
        if self.mix is None:
            return None
        try:
            weights = tuple(float(v) for v in self.mix.split(","))
        except ValueError:
            weights = ()
        if (
            len(weights) != len(self.data_dirs)
            or not all(math.isfinite(w) and w >= 0 for w in weights)
            or not sum(weights)
        ):
            raise TrainVAEError(
                f"--mix {self.mix!r} must give one non-negative share per dataset ({len(self.data_dirs)} given), "
                "comma-separated and not all zero, e.g. --mix " + ",".join(["0.5"] * len(self.data_dirs))
            )
        return weights

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Data


class BatchPrefetcher:
    """Gather uint8 batches ``dataset.frames(indices)`` in a background thread, ``depth`` ahead.

    Iterating yields uint8 tensors ``(B, h, w, c)`` (pinned when ``pin_memory``);
    ``wait_s`` is the time the consumer spent blocked waiting for data.

    >>> class Source:
    ...     def frames(self, idx): return np.zeros((len(idx), 2, 2, 3), np.uint8)
    >>> with BatchPrefetcher(Source(), [np.arange(4), np.arange(2)]) as batches:
    ...     [tuple(b.shape) for b in batches]
    [(4, 2, 2, 3), (2, 2, 2, 3)]
    """

    def __init__(self, dataset: Any, batches: list[np.ndarray], *, depth: int = 3, pin_memory: bool = False) -> None:
        self.wait_s = 0.0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._count = len(batches)
        self._thread = threading.Thread(target=self._work, args=(dataset, batches, pin_memory), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, dataset: Any, batches: list[np.ndarray], pin_memory: bool) -> None:
        try:
            for idx in batches:
                frames = torch.from_numpy(dataset.frames(idx))
                if not self._put(frames.pin_memory() if pin_memory else frames):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in range(self._count):
            start = time.perf_counter()
            item = self._queue.get()
            self.wait_s += time.perf_counter() - start
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunks(indices: np.ndarray, size: int) -> list[np.ndarray]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


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
    (measured in ``experiments/reports/benchmarks.md``, train_vae section).

    >>> default_batch_size(torch.device("cpu"), "fp32"), default_batch_size(torch.device("cpu"), "bf16")
    (64, 128)
    """
    return 64 if device.type == "cpu" and precision == "fp32" else 128


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# ---------------------------------------------------------------------------------------------
# Resume state (safetensors + JSON, no pickle)


def save_train_state(
    path: Path, vae: ConvVAE, optimizer: torch.optim.Optimizer, state: dict[str, Any], vae_config: VAEConfig
) -> None:
    """Write weights, AdamW moments and the JSON ``state`` (counters, scheduler, ...) in one atomic file."""
    header = {"vae_config": json.dumps(vae_config.to_dict())}
    save_resume_state(path, vae, optimizer, state, format_name=RESUME_FORMAT, header=header)


def load_train_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], VAEConfig, dict[str, Any]]:
    """Read a resume file: ``(model state dict, optimizer state dict, VAE config, JSON state)``."""
    model, optimizer, header, state = load_resume_state(path, format_name=RESUME_FORMAT, error=TrainVAEError)
    return model, optimizer, VAEConfig.from_dict(json.loads(header["vae_config"])), state


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
# Evaluation


@dataclass
class _Eval:
    recon: float
    kl: float
    total: float
    mse_per_pixel: float

    @property
    def psnr(self) -> float:
        return 10.0 * math.log10(1.0 / max(self.mse_per_pixel, 1e-12))

    def to_dict(self) -> dict[str, float]:
        return {"total": self.total, "mse_per_pixel": self.mse_per_pixel, "psnr": self.psnr}

    @staticmethod
    def mixed(evals: list[_Eval], weights: tuple[float, ...]) -> _Eval:
        """The ``weights``-weighted mean of per-dataset evaluations (weights sum to 1)."""
        terms = [sum(w * getattr(e, name) for e, w in zip(evals, weights, strict=True)) for name in
                 ("recon", "kl", "total", "mse_per_pixel")]  # fmt: skip
        return _Eval(*terms)


@torch.no_grad()
def _evaluate(vae: ConvVAE, ds: FrameMixture, indices: np.ndarray, batch: int, run: _Run, ctx: DistContext) -> _Eval:
    """Loss terms with ``z = mu`` (as encoders use it) over ``indices`` (this rank's share), summed over ranks."""
    vae.eval()
    sums = torch.zeros(3, dtype=torch.float64)  # recon (squared error per image), kl, total
    with BatchPrefetcher(ds, _chunks(indices, batch), pin_memory=run.pin) as batches:
        for frames in batches:
            x = frames_to_tensor(frames, ds.frame_spec, ctx.device, channels_last=run.channels_last)
            with autocast(ctx.device, run.amp_dtype):
                mu, logvar = vae.encode(x)  # (B, z) each
                x_hat = vae.decode(mu)
            loss = vae_loss(x, x_hat, mu, logvar, vae.config)
            n = len(x)
            sums += torch.stack([loss.recon * n, loss.kl * n, loss.total * n]).double().cpu()
    vae.train()
    count = all_reduce_sum(torch.tensor([float(len(indices))], dtype=torch.float64).to(ctx.device), ctx)
    sums = all_reduce_sum(sums.to(ctx.device), ctx).cpu() / float(count.item())
    pixels = math.prod(ds.frame_spec.shape)
    return _Eval(float(sums[0]), float(sums[1]), float(sums[2]), float(sums[0]) / pixels)


def _evaluate_each(
    vae: ConvVAE, ds: FrameMixture, selections: list[np.ndarray], batch: int, run: _Run, ctx: DistContext
) -> list[_Eval]:
    """:func:`_evaluate` on each dataset's held-out selection, every rank taking its share."""
    return [_evaluate(vae, ds, sel[ctx.rank :: ctx.world_size], batch, run, ctx) for sel in selections]


@torch.no_grad()
def _latent_moments(
    vae: ConvVAE, ds: FrameMixture, indices: np.ndarray, batch: int, run: _Run, ctx: DistContext
) -> LatentMoments:
    """Latent moments of the encoder over ``indices`` (this rank's share), summed over ranks."""
    vae.eval()
    with (
        BatchPrefetcher(ds, _chunks(indices, batch), pin_memory=run.pin) as batches,
        autocast(ctx.device, run.amp_dtype),
    ):
        tensors = (frames_to_tensor(f, ds.frame_spec, ctx.device, channels_last=run.channels_last) for f in batches)
        moments = accumulate_latents(vae, tensors, vae.config.latent_dim)
    vae.train()
    return moments.reduce(ctx)


@torch.no_grad()
def _encode_means(vae: ConvVAE, ds: FrameMixture, indices: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    out = []
    for idx in _chunks(indices, batch):
        mu, _ = vae.encode(frames_to_tensor(ds.frames(idx), ds.frame_spec, device))
        out.append(mu.float().cpu().numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(kw_only=True)
class _Run(RunCounters):
    """Resolved settings and mutable counters of one training run."""

    amp_dtype: torch.dtype | None
    precision: str
    channels_last: bool
    pin: bool
    init_val: list[dict[str, float]] | None = None
    """Per dataset, the --init checkpoint's held-out metrics before training."""

    def settings(self) -> tuple[str, ...]:
        return ("amp_dtype", "precision", "channels_last", "pin")


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
    out = check_run_dir(config.out, config.resume, TrainVAEError)
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
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    run = _Run(
        amp_dtype=autocast_dtype(precision, ctx.device),
        precision=precision,
        channels_last=config.channels_last,
        pin=ctx.device.type == "cuda",
    )

    torch.manual_seed(config.seed)
    vae = ConvVAE(vae_config)
    optimizer_state = None
    if config.init and config.resume and ctx.is_main:
        print(f"--init {config.init} ignored: --resume continues the run in {out} from its own weights",
              file=sys.stderr, flush=True)  # fmt: skip
    elif config.init:
        vae.load_state_dict(_load_init(config, vae_config, ds.frame_spec))
    if config.resume:
        model_state, optimizer_state, saved_config, saved = load_train_state(out / "resume.safetensors")
        _check_resumable(saved_config, vae_config, saved, ds.dataset_id)
        vae.load_state_dict(model_state)
        run.restore(saved["counters"])
    make_run_dir(out, TrainVAEError)
    vae.to(ctx.device)
    if config.channels_last:
        vae.to(memory_format=torch.channels_last)
    optimizer, scheduler = adamw_with_schedule(vae.parameters(), config, total_steps)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
    if config.resume:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(saved["scheduler"])
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
    module = wrap_ddp(_SampledVAE(vae), ctx)
    if config.compile:
        module = torch.compile(module)

    logger = _Logger(out, config, ctx, run, resumed=config.resume) if ctx.is_main else None
    if logger is not None:
        write_json_atomic(
            out / "config.json",
            {**config.to_dict(), "resolved": {"device": str(ctx.device), "precision": precision,
                                              "world_size": ctx.world_size, "total_steps": total_steps,
                                              "dataset_id": ds.dataset_id, "vae_config": vae_config.to_dict()}},
        )  # fmt: skip
    mix = config.mix_weights
    val_sels = [spread(val, config.val_max_frames) for _, val in splits]
    val_sel = np.concatenate(val_sels)
    val_weights = mix if mix is not None else tuple(float(len(sel)) for sel in val_sels)
    val_weights = tuple(w / sum(val_weights) for w in val_weights)
    stats_sel = spread(train_idx, config.stats_max_frames)
    eval_batch = max(config.batch_size // ctx.world_size, 64)
    start_time = time.perf_counter() - run.wall_s
    if config.init and not config.resume:  # the starting point's held-out quality, per dataset
        run.init_val = [e.to_dict() for e in _evaluate_each(vae, ds, val_sels, eval_batch, run, ctx)]

    while run.epoch < num_epochs and run.step < total_steps:
        epoch = run.epoch
        epoch_steps = min(steps_per_epoch, total_steps - run.step)
        rng = np.random.default_rng([config.seed, epoch])
        if mix is None:
            perm = rng.permutation(train_idx)
        else:
            perm = mixed_order([train for train, _ in splits], mix, epoch_steps * config.batch_size, rng)
        train = _train_epoch(module, vae, optimizer, scheduler, scaler, ds, perm, epoch_steps, config, ctx, run, logger)
        vals = _evaluate_each(vae, ds, val_sels, eval_batch, run, ctx)
        val = _Eval.mixed(vals, val_weights)
        check_finite(
            {"total": val.total},
            ctx,
            what="validation loss",
            when=f"after epoch {epoch + 1}",
            last=out / "last.safetensors",
        )
        train_moments = _latent_moments(vae, ds, stats_sel[ctx.rank :: ctx.world_size], eval_batch, run, ctx)
        stats = train_moments.to_stats()
        run.wall_s = time.perf_counter() - start_time
        improved = run.end_epoch(val.total, config.min_delta)
        record = {
            "epoch": epoch + 1,
            "step": run.step,
            "lr": scheduler.get_last_lr()[0],
            **{f"train/{k}": v for k, v in train.items()},
            "val/recon": val.recon,
            "val/kl": val.kl,
            "val/total": val.total,
            "val/mse_per_pixel": val.mse_per_pixel,
            "val/psnr": val.psnr,
            **{f"val/data{k}/{key}": value for k, v in enumerate(vals) for key, value in v.to_dict().items()},
            "latent/active_dims": int(stats.active.sum()),
            "best": improved,
            "wall_s": run.wall_s,
        }
        if improved:
            run.best_metrics = record
        inactive = 1.0 - stats.active.mean()
        if inactive > COLLAPSE_FRACTION and ctx.is_main:
            warnings.warn(
                f"posterior collapse: {int((~stats.active).sum())} of {len(stats.active)} latent dimensions carry "
                f"< {ACTIVE_THRESHOLD} nats of KL after epoch {epoch + 1}; lower --beta, or set --free-bits / "
                "--kl-tolerance",
                PosteriorCollapseWarning,
                stacklevel=2,
            )
        if logger is not None:
            logger.end_epoch(record, vae, ds, val_sel, train_moments.kl_per_dim, stats, improved, optimizer,
                             scheduler, scaler, vae_config)  # fmt: skip
        barrier(ctx)
        if config.patience and any_rank(run.bad_epochs >= config.patience, ctx):
            if logger is not None:
                logger.message(f"early stopping: no validation improvement for {run.bad_epochs} epochs")
            break

    if logger is not None:
        datasets = [
            {"data_dir": name, "dataset_id": d.dataset_id, "weight": w, "train_frames": len(train),
             "val_frames": len(sel)}
            for name, d, w, (train, _), sel in zip(ds.names, ds.datasets, val_weights, splits, val_sels, strict=True)
        ]  # fmt: skip
        logger.finish(ds, train_idx, val_sel, eval_batch, datasets)
    return out / "best.safetensors"


def _train_epoch(
    module: nn.Module,
    vae: ConvVAE,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ds: FrameMixture,
    perm: np.ndarray,
    n_steps: int,
    config: TrainVAEConfig,
    ctx: DistContext,
    run: _Run,
    logger: _Logger | None,
) -> dict[str, float]:
    """One pass over ``n_steps`` global batches of ``perm``; returns mean train metrics over all ranks."""
    from tqdm import tqdm

    global_batch, local_batch = config.batch_size, config.batch_size // ctx.world_size
    lo = ctx.rank * local_batch
    # Sorted indices read the memory-mapped shards in order; each rank gathers only its share.
    batches = [np.sort(perm[i * global_batch : (i + 1) * global_batch])[lo : lo + local_batch] for i in range(n_steps)]
    sums = torch.zeros(3, dtype=torch.float64)  # recon, kl, total
    bar = tqdm(total=n_steps, desc=f"epoch {run.epoch + 1}", unit="step", leave=False,
               disable=not (config.progress and ctx.is_main), file=sys.stderr)  # fmt: skip
    vae.train()
    start = time.perf_counter()
    with BatchPrefetcher(ds, batches, pin_memory=run.pin) as prefetcher:
        for i, frames in enumerate(prefetcher):
            gen = _step_generator(config.seed, run.step)
            eps = torch.randn(global_batch, vae.config.latent_dim, generator=gen)[lo : lo + local_batch]  # (b, z)
            x = frames_to_tensor(frames, ds.frame_spec, ctx.device, channels_last=config.channels_last)
            if config.hflip:
                flip = (torch.rand(global_batch, generator=gen) < 0.5)[lo : lo + local_batch].to(ctx.device)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                x = x.contiguous(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
            with autocast(ctx.device, run.amp_dtype):
                x_hat, mu, logvar = module(x, eps.to(ctx.device, non_blocking=True))
            loss = vae_loss(x, x_hat, mu, logvar, vae.config)
            values = torch.stack([loss.recon, loss.kl, loss.total]).detach().double().cpu()  # one sync per step
            check_finite(
                dict(zip(("recon", "kl", "total"), values.tolist(), strict=True)),
                ctx,
                what="training loss",
                when=f"at step {run.step} (epoch {run.epoch + 1})",
                last=Path(config.out) / "last.safetensors",
            )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss.total).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            run.step += 1
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


# ---------------------------------------------------------------------------------------------
# Rank 0: checkpoints, metrics, figures, TensorBoard


class _Logger:
    def __init__(self, out: Path, config: TrainVAEConfig, ctx: DistContext, run: _Run, *, resumed: bool) -> None:
        self.out, self.config, self.ctx, self.run = out, config, ctx, run
        self.log = MetricsLog(out, tensorboard=config.tensorboard, resumed_epoch=run.epoch if resumed else None,
                              resumed_step=run.step)  # fmt: skip

    def message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def end_epoch(
        self,
        record: dict[str, Any],
        vae: ConvVAE,
        ds: FrameMixture,
        val_sel: np.ndarray,
        kl_per_dim: np.ndarray,
        stats: LatentStats,
        improved: bool,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        vae_config: VAEConfig,
    ) -> None:
        meta = {
            "step": record["step"],
            "epoch": record["epoch"],
            "dataset_id": ds.dataset_id,
            "env_id": ds.env_id,
            "val_loss": record["val/total"],
            "val_mse_per_pixel": record["val/mse_per_pixel"],
        }
        if improved:
            save_vae(self.out / "best.safetensors", vae, ds.frame_spec, latent_stats=stats, **meta)
        save_vae(self.out / "last.safetensors", vae, ds.frame_spec, latent_stats=stats, **meta)
        images = self._figures(vae, ds, val_sel, kl_per_dim) if self.config.figures else {}
        self.log.write(record, images)
        state = {
            "counters": self.run.counters(),
            "scheduler": scheduler.state_dict(),  # plain numbers (lr_lambdas: [None] for a function)
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "dataset_id": ds.dataset_id,
        }
        # The commit point of the epoch: a kill before this line resumes from the previous epoch.
        save_train_state(self.out / "resume.safetensors", vae, optimizer, state, vae_config)
        self.message(
            f"epoch {record['epoch']}: train {record['train/total']:.2f} val {record['val/total']:.2f} "
            f"(mse/pixel {record['val/mse_per_pixel']:.5f}, {record['latent/active_dims']} active dims) "
            f"{record['train/images_per_s']:.0f} img/s, data wait {100 * record['train/data_wait_share']:.1f}%"
            + (" *best*" if improved else "")
        )

    def _figures(self, vae: ConvVAE, ds: FrameMixture, val_sel: np.ndarray, kl_per_dim: np.ndarray) -> dict:
        vae.eval()
        x = frames_to_tensor(ds.frames(spread(val_sel, FIGURE_FRAMES)), ds.frame_spec, self.ctx.device)
        images = {
            "recon": reconstruction_grid(vae, x),
            "samples": prior_samples(vae, 2 * FIGURE_FRAMES, torch.Generator().manual_seed(self.config.seed)),
            "traversal": latent_traversal(vae, x[:1], kl_per_dim),
            "kl": kl_bar_chart(kl_per_dim, ACTIVE_THRESHOLD),
        }
        vae.train()
        for name, image in images.items():
            write_png(self.out / f"{name}.png", image)
        return images

    def finish(
        self, ds: FrameMixture, train_idx: np.ndarray, val_sel: np.ndarray, batch: int, datasets: list[dict[str, Any]]
    ) -> None:
        """Write ``summary.json``; ``datasets`` describes each dataset (weight, frames), best-epoch metrics added."""
        best = load_vae(self.out / "best.safetensors", device=self.ctx.device)
        probe = None
        if ds.state_dim is not None:
            z_train_idx, z_val_idx = spread(train_idx, PROBE_MAX_FRAMES), spread(val_sel, PROBE_MAX_FRAMES)
            r2 = linear_probe_r2(
                _encode_means(best.vae, ds, z_train_idx, batch, self.ctx.device),
                ds.states(z_train_idx),
                _encode_means(best.vae, ds, z_val_idx, batch, self.ctx.device),
                ds.states(z_val_idx),
            )
            probe = [None if math.isnan(v) else float(v) for v in r2]
        m = self.run.best_metrics
        for k, entry in enumerate(datasets):
            entry.update({f"val_{key}": m[f"val/data{k}/{key}"] for key in ("total", "mse_per_pixel", "psnr")})
            if self.run.init_val is not None:
                entry.update({f"init_val_{key}": value for key, value in self.run.init_val[k].items()})
        summary = {
            "best_checkpoint": str(self.out / "best.safetensors"),
            "best_epoch": self.run.best_epoch + 1,
            "epochs": self.run.epoch,
            "steps": self.run.step,
            "val_mse_per_pixel": m["val/mse_per_pixel"],
            "val_psnr_db": m["val/psnr"],
            "val_loss": m["val/total"],
            "active_dims": int(best.latent_stats.active.sum()) if best.latent_stats is not None else None,
            "latent_dim": best.vae.config.latent_dim,
            "linear_probe_r2": probe,
            "wall_s": self.run.wall_s,
            "images_per_s": m["train/images_per_s"],
            "data_wait_share": m["train/data_wait_share"],
            "val_frames": len(val_sel),
            "train_frames": len(train_idx),
            "dataset_id": ds.dataset_id,
            "datasets": datasets,
            "init": self.config.init,
            "device": str(self.ctx.device),
            "precision": self.run.precision,
            "world_size": self.ctx.world_size,
        }
        write_json_atomic(self.out / "summary.json", summary)
        self.log.close()
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
