"""worldmodel: a convolutional VAE that turns environment frames into small latent vectors.

This package is torch + numpy only: the VAE, the memory model over its latents (MDN-RNN),
frame preprocessing, datasets, training and checkpoints. Gymnasium and Stable-Baselines3
adapters live in ``envs`` and ``agents``.

Importing it first sets OpenMP's defaults for torch (``OMP_WAIT_POLICY=PASSIVE``, unless the
environment already says how threads wait): see :mod:`worldmodel.common.openmp`.
"""

import worldmodel.common.openmp  # noqa: F401  (first, before torch loads: it sets OpenMP's defaults)
from worldmodel.frames import FrameSpec, frames_to_tensor, preprocess_frame, preprocess_frames, tensor_to_frames
from worldmodel.memory.model import MDNRNN, MemoryCheckpoint, MemoryConfig, load_memory, memory_loss, save_memory
from worldmodel.vae.checkpoint import CheckpointError, LatentStats, VAECheckpoint, load_vae, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig, VAELoss, vae_loss

__version__ = "0.1.0"

__all__ = [
    "MDNRNN",
    "CheckpointError",
    "ConvVAE",
    "FrameSpec",
    "LatentStats",
    "MemoryCheckpoint",
    "MemoryConfig",
    "VAECheckpoint",
    "VAEConfig",
    "VAELoss",
    "frames_to_tensor",
    "load_memory",
    "load_vae",
    "memory_loss",
    "preprocess_frame",
    "preprocess_frames",
    "save_memory",
    "save_vae",
    "tensor_to_frames",
    "vae_loss",
]
