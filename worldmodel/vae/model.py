"""The convolutional VAE of World Models (Ha & Schmidhuber 2018) and its loss.

>>> import torch
>>> vae = ConvVAE(VAEConfig())
>>> x_hat, mu, logvar = vae(torch.rand(2, 3, 64, 64))
>>> x_hat.shape, mu.shape
(torch.Size([2, 3, 64, 64]), torch.Size([2, 32]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from worldmodel.common.dictconfig import DictConfig

LOGVAR_MIN = -20.0
LOGVAR_MAX = 10.0
REFERENCE_SIZE = 64
MOTION_THRESHOLD = 8 / 255
"""A pixel counts as changed when some channel moved by more than this (8 levels of 255) between frames."""


@dataclass(frozen=True)
class VAEConfig(DictConfig):
    """Architecture and loss settings of :class:`ConvVAE`."""

    height: int = 64
    """Input height; 64 gives the reference architecture, other multiples of 16 the padded variant."""
    width: int = 64
    """Input width; 64 gives the reference architecture, other multiples of 16 the padded variant."""
    channels: int = 3
    """Input channels: 3 for RGB, 1 for grayscale."""
    latent_dim: int = 32
    """Size of the latent vector z."""
    width_multiplier: float = 1.0
    """Scales every conv layer's channel count (32-64-128-256 at 1.0)."""
    beta: float = 1.0
    """Weight of the KL term."""
    kl_tolerance: float = 0.0
    """World Models' floor: each image's KL (summed over dims) is floored at ``kl_tolerance * latent_dim``."""
    free_bits: float = 0.0
    """Per-dimension floor (nats) on the batch-mean KL of each latent dimension."""
    motion_weight: float = 0.0
    """Extra reconstruction weight of the pixels that changed since the episode's previous frame (see
    :func:`motion_weights`; 0 = off). Small moving objects, such as an Atari ball, then cost more to drop."""

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"VAEConfig channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise ValueError(
                f"VAEConfig height and width must be positive multiples of 16, got {self.height}x{self.width}"
            )
        if self.latent_dim <= 0 or self.width_multiplier <= 0:
            raise ValueError(
                f"VAEConfig latent_dim and width_multiplier must be positive, "
                f"got {self.latent_dim} and {self.width_multiplier}"
            )
        if min(self.beta, self.kl_tolerance, self.free_bits, self.motion_weight) < 0:
            raise ValueError("VAEConfig beta, kl_tolerance, free_bits and motion_weight must be >= 0")

    @property
    def is_reference(self) -> bool:
        """True when the exact World Models architecture (64x64, unpadded convs) is used."""
        return self.height == REFERENCE_SIZE and self.width == REFERENCE_SIZE

    @property
    def conv_channels(self) -> tuple[int, int, int, int]:
        return tuple(max(1, round(c * self.width_multiplier)) for c in (32, 64, 128, 256))  # type: ignore[return-value]


class ConvVAE(nn.Module):
    """Convolutional VAE: ``encode(x) -> (mu, logvar)``, ``decode(z) -> x_hat`` in [0, 1].

    At 64x64 (the default) this is exactly the World Models architecture: four unpadded
    4x4 stride-2 convs (32-64-128-256 channels, ReLU) to a 2x2x256 map, linear heads for
    mu and logvar; the decoder maps z to a 1x1x1024 map and four transposed convs with
    kernels 5-5-6-6 (128-64-32-C channels) back to 64x64. At 64x64x3 with z=32 it has
    4,348,547 parameters (755,744 encoder, 3,592,803 decoder), as the reference.

    That decoder can only produce 64x64, so other sizes (multiples of 16, e.g. 96 or
    128, any aspect ratio) use a padded variant of the same design: 4x4 stride-2 convs
    with padding 1 down to (H/16)x(W/16)x256, and 4x4 stride-2 transposed convs with
    padding 1 back up from a linear projection of z.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.conv_channels
        pad = 0 if config.is_reference else 1
        self.encoder = nn.Sequential(
            nn.Conv2d(config.channels, c1, 4, stride=2, padding=pad),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=pad),
            nn.ReLU(),
            nn.Conv2d(c2, c3, 4, stride=2, padding=pad),
            nn.ReLU(),
            nn.Conv2d(c3, c4, 4, stride=2, padding=pad),
            nn.ReLU(),
            nn.Flatten(),
        )
        if config.is_reference:
            flat = c4 * 2 * 2
            self._decoder_map = (4 * c4, 1, 1)
            deconvs = [(4 * c4, c3, 5), (c3, c2, 5), (c2, c1, 6), (c1, config.channels, 6)]
        else:
            flat = c4 * (config.height // 16) * (config.width // 16)
            self._decoder_map = (c4, config.height // 16, config.width // 16)
            deconvs = [(c4, c3, 4), (c3, c2, 4), (c2, c1, 4), (c1, config.channels, 4)]
        self.fc_mu = nn.Linear(flat, config.latent_dim)
        self.fc_logvar = nn.Linear(flat, config.latent_dim)
        self.fc_decode = nn.Linear(config.latent_dim, math.prod(self._decoder_map))
        layers: list[nn.Module] = []
        for i, (c_in, c_out, k) in enumerate(deconvs):
            layers.append(nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=pad))
            layers.append(nn.ReLU() if i < len(deconvs) - 1 else nn.Sigmoid())
        self.decoder = nn.Sequential(*layers)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a float batch ``(B, C, H, W)`` matching the config."""
        cfg = self.config
        if not torch.is_floating_point(x):
            raise ValueError(f"expected float input in [0, 1] (use frames_to_tensor), got dtype {x.dtype}")
        if x.ndim != 4 or tuple(x.shape[1:]) != (cfg.channels, cfg.height, cfg.width):
            raise ValueError(
                f"expected input of shape (B, {cfg.channels}, {cfg.height}, {cfg.width}), got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map images ``(B, C, H, W)`` in [0, 1] to ``(mu, logvar)``, each ``(B, z)``; logvar is clamped."""
        self.check_input(x)
        h = self.encoder(x)  # (B, flat)
        mu = self.fc_mu(h)  # (B, z)
        logvar = self.fc_logvar(h).clamp(LOGVAR_MIN, LOGVAR_MAX)  # (B, z)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents ``(B, z)`` to images ``(B, C, H, W)`` in [0, 1].

        In the reference decoder the first transposed conv (1024 -> 128 channels, 5x5) sees a
        1x1 map, so it is computed as the matrix product it is: ``h @ W.view(1024, 128 * 25)``.
        Same parameters and function; oneDNN's transposed-conv kernel runs it ~10x slower (a
        quarter of a CPU training step at batch 128).
        """
        h = self.fc_decode(z)  # (B, C' * h' * w')
        if not self.config.is_reference:
            return self.decoder(h.view(-1, *self._decoder_map))  # (B, C, H, W)
        first = self.decoder[0]
        y = h @ first.weight.flatten(1)  # (B, 128 * 5 * 5)
        y = y.view(-1, *first.weight.shape[1:]) + first.bias.view(1, -1, 1, 1)  # (B, 128, 5, 5)
        return self.decoder[1:](y)  # (B, C, 64, 64)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Sample ``z = mu + sigma * eps`` with ``eps ~ N(0, I)`` (differentiable in mu and logvar)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample, decode: returns ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x)
        x_hat = self.decode(self.reparameterize(mu, logvar))
        return x_hat, mu, logvar


class VAELoss(NamedTuple):
    """Terms of :func:`vae_loss`, each a scalar averaged over the batch unless said."""

    total: torch.Tensor
    """``recon + beta * kl``: what is minimised."""
    recon: torch.Tensor
    """Summed squared error per image."""
    kl: torch.Tensor
    """KL per image after the floors (the optimised term)."""
    kl_raw: torch.Tensor
    """KL per image before any floor."""
    kl_per_dim: torch.Tensor
    """``(z,)`` batch-mean KL of each latent dimension before floors, in nats."""


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(N(mu, exp(logvar)) || N(0, 1))``, shape of ``mu``; clamped logvar keeps it finite.

    >>> import torch
    >>> float(kl_divergence(torch.zeros(1, 4), torch.zeros(1, 4)).sum())
    0.0
    """
    mu, logvar = mu.float(), logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def motion_weights(x: torch.Tensor, previous: torch.Tensor, motion_weight: float) -> torch.Tensor:
    """Per-pixel reconstruction weights ``(B, 1, H, W)``: ``1 + motion_weight`` where any channel of ``x``
    differs from ``previous`` (the episode's frame before, or ``x`` itself for a first frame) by more than
    :data:`MOTION_THRESHOLD`, 1 elsewhere.

    >>> import torch
    >>> x, previous = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    >>> x[0, 1, 0, 1] = 1.0  # one pixel's green channel changed
    >>> motion_weights(x, previous, 9.0)[0, 0].tolist()
    [[1.0, 10.0], [1.0, 1.0]]
    """
    changed = (x.float() - previous.float()).abs().amax(1, keepdim=True) > MOTION_THRESHOLD
    return 1.0 + motion_weight * changed.float()


def vae_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    config: VAEConfig,
    weights: torch.Tensor | None = None,
) -> VAELoss:
    """The VAE objective, always computed in float32 (also under autocast).

    Terms:

    - reconstruction: squared error summed over pixels and channels per image (as the
      World Models reference), averaged over the batch; each pixel's error times its
      ``weights`` when given (``(B, 1, H, W)``, e.g. :func:`motion_weights`);
    - KL: ``KL(q(z|x) || N(0, I))`` summed over latent dimensions per image.

    Floors on the KL (both off by default):

    - ``free_bits`` (Kingma et al. 2016): each dimension's batch-mean KL is replaced by
      ``max(kl_d, free_bits)``, so a dimension below the floor gets no gradient pushing
      it further to the prior;
    - ``kl_tolerance`` (World Models): each image's summed KL is replaced by
      ``max(kl, kl_tolerance * latent_dim)`` before averaging over the batch. With free
      bits on as well, the tolerance floors the free-bits sum instead.

    ``total = recon + beta * kl``.
    """
    x, x_hat = x.float(), x_hat.float()
    error = (x_hat - x).pow(2)
    recon = (error if weights is None else error * weights).flatten(1).sum(1).mean()
    kl_elem = kl_divergence(mu, logvar)  # (B, z)
    kl_per_dim = kl_elem.mean(0)  # (z,)
    kl_raw = kl_elem.sum(1).mean()
    if config.free_bits > 0:
        kl = kl_per_dim.clamp(min=config.free_bits).sum()
        kl = kl.clamp(min=config.kl_tolerance * config.latent_dim)
    else:
        kl = kl_elem.sum(1).clamp(min=config.kl_tolerance * config.latent_dim).mean()
    total = recon + config.beta * kl
    return VAELoss(total=total, recon=recon, kl=kl, kl_raw=kl_raw, kl_per_dim=kl_per_dim.detach())
