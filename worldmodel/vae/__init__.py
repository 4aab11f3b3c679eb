"""The VAE: model and loss, self-describing checkpoints, batched encoding, diagnostics, its trainer."""

from worldmodel.vae.checkpoint import CheckpointError, LatentStats, VAECheckpoint, load_vae, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig, VAELoss, vae_loss

__all__ = [
    "CheckpointError",
    "ConvVAE",
    "LatentStats",
    "VAECheckpoint",
    "VAEConfig",
    "VAELoss",
    "load_vae",
    "save_vae",
    "vae_loss",
]
