"""Per-dimension statistics of a VAE's latent means over a training set.

The wrappers standardise latents with these (``normalize=True``) and drop dimensions
that carry no information (``drop_inactive=True``), instead of letting a running
normaliser blow collapsed dimensions up into noise. A dimension is *active* when its
mean KL to the prior exceeds ``active_threshold`` nats (0.01 by default, the same
threshold as the posterior-collapse warning).

Moments are accumulated in float64 and can be summed over DDP ranks
(:meth:`LatentMoments.reduce`), so each rank encodes only its own part of the data.

>>> import torch
>>> moments = LatentMoments(latent_dim=2)
>>> moments.update(torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.zeros(2, 2))
>>> stats = moments.to_stats()
>>> stats.mean.tolist(), stats.std.tolist(), stats.active.tolist()
([2.0, 0.0], [1.0, 0.0], [True, False])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from worldmodel.training.distributed import DistContext, all_reduce_sum
from worldmodel.vae.checkpoint import LatentStats
from worldmodel.vae.model import ConvVAE, kl_divergence

ACTIVE_THRESHOLD = 0.01
"""Nats of mean KL above which a latent dimension counts as active."""


class LatentMoments:
    """Running count, sum and sum of squares of ``mu``, and summed KL, per latent dimension."""

    def __init__(self, latent_dim: int) -> None:
        self.count = 0.0
        self.sum = torch.zeros(latent_dim, dtype=torch.float64)
        self.sumsq = torch.zeros(latent_dim, dtype=torch.float64)
        self.kl = torch.zeros(latent_dim, dtype=torch.float64)

    def update(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """Add a batch of posterior parameters ``mu, logvar`` of shape ``(B, z)``."""
        mu64 = mu.detach().to("cpu", torch.float64)  # (B, z)
        self.count += mu64.shape[0]
        self.sum += mu64.sum(0)
        self.sumsq += mu64.pow(2).sum(0)
        self.kl += kl_divergence(mu.detach(), logvar.detach()).to("cpu", torch.float64).sum(0)

    def reduce(self, ctx: DistContext) -> LatentMoments:
        """The moments summed over every DDP rank (self when running alone)."""
        if not ctx.distributed:
            return self
        packed = torch.cat([torch.tensor([self.count], dtype=torch.float64), self.sum, self.sumsq, self.kl])
        packed = all_reduce_sum(packed.to(ctx.device), ctx).cpu()
        z = len(self.sum)
        out = LatentMoments(z)
        out.count = float(packed[0])
        out.sum, out.sumsq, out.kl = packed[1 : 1 + z], packed[1 + z : 1 + 2 * z], packed[1 + 2 * z :]
        return out

    @property
    def kl_per_dim(self) -> np.ndarray:
        """``(z,)`` mean KL per dimension in nats."""
        return (self.kl / max(self.count, 1.0)).numpy()

    def to_stats(self, active_threshold: float = ACTIVE_THRESHOLD) -> LatentStats:
        """Mean, (population) standard deviation and active mask as :class:`LatentStats`."""
        if self.count == 0:
            raise ValueError("no latents were accumulated; LatentStats need at least one frame")
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean.pow(2)).clamp(min=0.0)
        return LatentStats(
            mean=mean.numpy().astype(np.float32),
            std=var.sqrt().numpy().astype(np.float32),
            active=self.kl_per_dim > active_threshold,
        )


@torch.no_grad()
def accumulate_latents(vae: ConvVAE, batches: Iterable[torch.Tensor], latent_dim: int) -> LatentMoments:
    """Encode float batches ``(B, C, H, W)`` in [0, 1] and accumulate their latent moments."""
    moments = LatentMoments(latent_dim)
    for x in batches:
        mu, logvar = vae.encode(x)  # (B, z) each
        moments.update(mu, logvar)
    return moments
