"""Batched encoding of uint8 frames into VAE latents on a device (inference only).

:class:`LatentEncoder` is what the latent observation wrappers call: one forward pass
for a whole batch of frames (already preprocessed by the checkpoint's frame spec), the
uint8 batch moved to the device before conversion, eval mode and
``torch.inference_mode``, optional standardisation with the checkpoint's
:class:`~worldmodel.vae.checkpoint.LatentStats` and dropping of inactive dimensions.

>>> import tempfile, pathlib
>>> import numpy as np
>>> from worldmodel.vae.checkpoint import save_vae
>>> from worldmodel.frames import FrameSpec
>>> from worldmodel.vae.model import ConvVAE, VAEConfig
>>> path = pathlib.Path(tempfile.mkdtemp()) / "vae.safetensors"
>>> save_vae(path, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
>>> encoder = LatentEncoder(path, device="cpu")
>>> encoder.encode(np.zeros((5, 16, 16, 3), dtype=np.uint8)).shape
(5, 4)
>>> encoder.reconstruct(np.zeros((2, 16, 16, 3), dtype=np.uint8)).dtype
dtype('uint8')
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable

import numpy as np
import torch

from worldmodel.common.device import autocast_dtype, default_precision, resolve_device
from worldmodel.frames import FrameSpec, frames_to_tensor, tensor_to_frames
from worldmodel.vae.checkpoint import VAECheckpoint, load_vae
from worldmodel.vae.model import ConvVAE

LATENT_MODES = ("mean", "sample")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
MIN_STD = 1e-6


class LatentEncoder:
    """Encode batches of preprocessed uint8 frames ``(N, h, w, c)`` to float32 latents ``(N, d)``.

    Args:
        vae: a VAE checkpoint path or a loaded :class:`~worldmodel.vae.checkpoint.VAECheckpoint`
            (its model is copied when it must move to another device, so the
            caller's object is never changed).
        device: ``auto`` (cuda, else mps, else cpu), or an explicit device string.
        latent: ``mean`` (deterministic mu) or ``sample`` (``mu + sigma * eps``, reproducible
            with a :meth:`make_generator` generator).
        normalize: standardise each dimension with the checkpoint's latent statistics.
        drop_inactive: keep only the dimensions the checkpoint's statistics mark active.
        precision: ``fp32``; ``bf16`` (autocast; fast on CUDA and on CPUs with native bf16,
            emulated and slower elsewhere); ``fp16`` (CUDA only); ``auto`` picks per device.
        compile: wrap the forward pass in ``torch.compile`` (slow first calls; helps small
            batches on the CPU by removing per-layer overhead).
    """

    def __init__(
        self,
        vae: VAECheckpoint | str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        latent: str = "mean",
        normalize: bool = False,
        drop_inactive: bool = False,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = resolve_device(device)
        self.precision = default_precision(self.device) if precision == "auto" else precision
        self._autocast_dtype = autocast_dtype(self.precision, self.device)
        checkpoint = vae if isinstance(vae, VAECheckpoint) else load_vae(vae, device="cpu")
        # A private copy in channels-last layout: oneDNN's convs run ~25% faster on it (CPU
        # benchmark in experiments/reports/benchmarks/), and the caller's model stays as it was.
        model = copy.deepcopy(checkpoint.vae).to(self.device, memory_format=torch.channels_last)
        cfg = model.config
        if checkpoint.frame_spec.shape != (cfg.height, cfg.width, cfg.channels):
            raise ValueError(
                f"the checkpoint's frame spec makes frames of shape {checkpoint.frame_spec.shape} but its VAE "
                f"expects {(cfg.height, cfg.width, cfg.channels)}; save it again with a matching FrameSpec"
            )
        self.checkpoint = checkpoint
        self.vae: ConvVAE = model.eval()
        self.latent = latent
        self.normalize = normalize
        self.drop_inactive = drop_inactive
        source = checkpoint.path or "the given VAE checkpoint"
        stats = checkpoint.latent_stats
        if (normalize or drop_inactive) and stats is None:
            raise ValueError(
                f"normalize/drop_inactive need latent statistics, but {source} has none; "
                "use a checkpoint written by `worldmodel train-vae` (it stores them) "
                "or set normalize=False and drop_inactive=False"
            )
        self._mean = self._std = self._keep = None
        if normalize:
            self._mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=self.device)
            self._std = torch.as_tensor(stats.std, dtype=torch.float32, device=self.device).clamp(min=MIN_STD)
        if drop_inactive:
            keep = np.flatnonzero(stats.active)
            if keep.size == 0:
                raise ValueError(f"{source} marks no latent dimension active; set drop_inactive=False")
            self._keep = torch.as_tensor(keep, dtype=torch.long, device=self.device)
        self.latent_dim = int(self._keep.numel()) if self._keep is not None else self.vae.config.latent_dim
        self._posterior: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = (
            torch.compile(self.vae.encode) if compile else self.vae.encode
        )

    @property
    def frame_spec(self) -> FrameSpec:
        """The preprocessing the VAE was trained with; :meth:`encode` expects its output shape."""
        return self.checkpoint.frame_spec

    def make_generator(self, seed: int | None = None) -> torch.Generator:
        """A generator on the encoder's device for ``latent="sample"``; seeded nondeterministically when None."""
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _raw_posterior(self, frames: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(N, z)`` float32 on the device, one forward pass."""
        x = frames_to_tensor(frames, self.frame_spec, self.device, channels_last=True)  # (N, c, h, w)
        with self._autocast():
            mu, logvar = self._posterior(x)  # (N, z) each
        return mu.float(), logvar.float()

    def _raw_latents(self, frames: np.ndarray | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Latents before normalisation ``(N, z)`` float32 on the device, one forward pass."""
        mu, logvar = self._raw_posterior(frames)
        if self.latent == "sample":
            return ConvVAE.reparameterize(mu, logvar, generator)
        return mu

    @torch.inference_mode()
    def posterior(self, frames: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The VAE's ``(mu, logvar)`` of uint8 frames, each float32 ``(N, z)``: all dimensions, not normalised."""
        mu, logvar = self._raw_posterior(frames)
        return mu.cpu().numpy(), logvar.cpu().numpy()

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """Latents ``(N, latent_dim)`` float32 of uint8 frames ``(N, *frame_spec.shape)``."""
        if len(frames) == 0:
            return np.zeros((0, self.latent_dim), dtype=np.float32)
        z = self._raw_latents(frames, generator)  # (N, z)
        if self._mean is not None:
            z = (z - self._mean) / self._std
        if self._keep is not None:
            z = z.index_select(1, self._keep)  # (N, d)
        return z.cpu().numpy()

    @torch.inference_mode()
    def reconstruct(self, frames: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> np.ndarray:
        """Decode the latents of ``frames`` back to uint8 frames of the same shape (for videos)."""
        z = self._raw_latents(frames, generator)  # (N, z)
        with self._autocast():
            x_hat = self.vae.decode(z)  # (N, c, h, w)
        return tensor_to_frames(x_hat)
