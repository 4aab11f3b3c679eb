"""The settings of ``worldmodel train-vae``: :class:`TrainVAEConfig`, one field per command-line option.

>>> config = TrainVAEConfig("data", out="run", more_data_dirs=("more",), mix="0.75,0.25")
>>> config.data_dirs, config.mix_weights
(('data', 'more'), (0.75, 0.25))
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from worldmodel.training.run import TrainError


class TrainVAEError(TrainError):
    """A ``train-vae`` request that cannot run (bad data, size mismatch, unusable run directory, ...)."""


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
    motion_weight: float = 0.0
    """Extra reconstruction weight of pixels that changed since the episode's previous frame (0 = off). For
    small moving objects the plain loss can ignore, such as Pong's ball: the weighted pixels' squared error
    counts 1 + motion_weight times. Validation losses are weighted the same way (held-out MSE per pixel is not),
    so the best checkpoint is the best on the objective trained."""
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
