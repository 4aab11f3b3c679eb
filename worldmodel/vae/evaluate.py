"""Held-out evaluation of a VAE on frames: loss terms with ``z = mu``, latent moments, encoder means.

Frames are gathered by a :class:`~worldmodel.training.prefetch.BatchPrefetcher`; under DDP each
rank evaluates its share of the indices and the sums are added over all ranks.

>>> round(HeldOutLoss(recon=1.0, kl=0.5, total=1.5, mse_per_pixel=0.01).psnr, 6)
20.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from worldmodel.data.mixture import FrameMixture
from worldmodel.frames import frames_to_tensor
from worldmodel.training.distributed import DistContext, all_reduce_sum
from worldmodel.training.prefetch import BatchPrefetcher, chunks
from worldmodel.training.run import autocast
from worldmodel.vae.latent_stats import LatentMoments, accumulate_latents
from worldmodel.vae.model import ConvVAE, motion_weights, vae_loss


@dataclass(frozen=True)
class FrameFeed:
    """How frames reach the model: through pinned host memory, in channels-last format, under autocast."""

    amp_dtype: torch.dtype | None = None
    """Autocast dtype (None: fp32)."""
    channels_last: bool = False
    pin: bool = False


@dataclass(frozen=True)
class HeldOutLoss:
    """The VAE's mean loss terms per frame over held-out frames, with ``z = mu``."""

    recon: float
    kl: float
    total: float
    mse_per_pixel: float

    @property
    def psnr(self) -> float:
        """Peak signal-to-noise ratio in dB of the reconstructions (pixels in [0, 1])."""
        return 10.0 * math.log10(1.0 / max(self.mse_per_pixel, 1e-12))

    def to_dict(self) -> dict[str, float]:
        return {"total": self.total, "mse_per_pixel": self.mse_per_pixel, "psnr": self.psnr}

    @staticmethod
    def mixed(evals: list[HeldOutLoss], weights: tuple[float, ...]) -> HeldOutLoss:
        """The ``weights``-weighted mean of per-dataset evaluations (weights sum to 1)."""
        terms = [sum(w * getattr(e, name) for e, w in zip(evals, weights, strict=True)) for name in
                 ("recon", "kl", "total", "mse_per_pixel")]  # fmt: skip
        return HeldOutLoss(*terms)


def with_previous_frames(ds: FrameMixture, batches: list[np.ndarray]) -> list[np.ndarray]:
    """Each batch of frame indices followed by the indices of its frames' previous frames (for motion weights)."""
    return [np.concatenate([b, ds.previous_in_episode(b)]) for b in batches]


def split_previous(x: torch.Tensor, motion_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch gathered through :func:`with_previous_frames`: its frames and their motion weights ``(B, 1, h, w)``."""
    x, previous = x[: len(x) // 2], x[len(x) // 2 :]
    return x, motion_weights(x, previous, motion_weight)


@torch.no_grad()
def evaluate(
    vae: ConvVAE, ds: FrameMixture, indices: np.ndarray, batch: int, feed: FrameFeed, ctx: DistContext
) -> HeldOutLoss:
    """Loss terms with ``z = mu`` (as encoders use it) over ``indices`` (this rank's share), summed over ranks.

    The reconstruction term is weighted as in training (``motion_weight``); ``mse_per_pixel`` never is.
    """
    vae.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # recon (per image, weighted), kl, total, squared error per image
    motion = vae.config.motion_weight > 0
    batches = with_previous_frames(ds, chunks(indices, batch)) if motion else chunks(indices, batch)
    with BatchPrefetcher(ds, batches, pin_memory=feed.pin) as prefetcher:
        for frames in prefetcher:
            x = frames_to_tensor(frames, ds.frame_spec, ctx.device, channels_last=feed.channels_last)
            weights = None
            if motion:
                x, weights = split_previous(x, vae.config.motion_weight)
            with autocast(ctx.device, feed.amp_dtype):
                mu, logvar = vae.encode(x)  # (B, z) each
                x_hat = vae.decode(mu)
            loss = vae_loss(x, x_hat, mu, logvar, vae.config, weights)
            squared = loss.recon if weights is None else (x_hat.float() - x.float()).pow(2).flatten(1).sum(1).mean()
            n = len(x)
            sums += torch.stack([loss.recon * n, loss.kl * n, loss.total * n, squared * n]).double().cpu()
    vae.train()
    count = all_reduce_sum(torch.tensor([float(len(indices))], dtype=torch.float64).to(ctx.device), ctx)
    sums = all_reduce_sum(sums.to(ctx.device), ctx).cpu() / float(count.item())
    pixels = math.prod(ds.frame_spec.shape)
    return HeldOutLoss(float(sums[0]), float(sums[1]), float(sums[2]), float(sums[3]) / pixels)


@torch.no_grad()
def latent_moments(
    vae: ConvVAE, ds: FrameMixture, indices: np.ndarray, batch: int, feed: FrameFeed, ctx: DistContext
) -> LatentMoments:
    """Latent moments of the encoder over ``indices`` (this rank's share), summed over ranks."""
    vae.eval()
    with (
        BatchPrefetcher(ds, chunks(indices, batch), pin_memory=feed.pin) as batches,
        autocast(ctx.device, feed.amp_dtype),
    ):
        tensors = (frames_to_tensor(f, ds.frame_spec, ctx.device, channels_last=feed.channels_last) for f in batches)
        moments = accumulate_latents(vae, tensors, vae.config.latent_dim)
    vae.train()
    return moments.reduce(ctx)


@torch.no_grad()
def encode_means(vae: ConvVAE, ds: FrameMixture, indices: np.ndarray, batch: int, device: torch.device) -> np.ndarray:
    """float32 ``(len(indices), z)`` encoder means of the frames at ``indices``."""
    out = []
    for idx in chunks(indices, batch):
        mu, _ = vae.encode(frames_to_tensor(ds.frames(idx), ds.frame_spec, device))
        out.append(mu.float().cpu().numpy())
    return np.concatenate(out)
