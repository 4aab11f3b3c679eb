"""What the VAE sees: reconstruction grids, prior samples, latent traversals, KL per
dimension, and a linear probe from latents to true states.

Figures are plain ``uint8`` RGB images (so TensorBoard can take them too) written as PNGs
atomically; the bar chart uses matplotlib's headless Agg backend.

>>> import torch
>>> from worldmodel.vae.model import ConvVAE, VAEConfig
>>> vae = ConvVAE(VAEConfig(height=16, width=16, latent_dim=4, width_multiplier=0.25)).eval()
>>> x = torch.rand(3, 3, 16, 16)
>>> reconstruction_grid(vae, x).shape  # 2 rows (frames, reconstructions) of 3 tiles with 2-pixel gaps
(34, 52, 3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from worldmodel.common.atomic import atomic_path
from worldmodel.frames import tensor_to_frames
from worldmodel.vae.model import ConvVAE

PAD = 2
"""Pixels of white space between tiles of a grid."""


def image_grid(rows: Sequence[np.ndarray], pad: int = PAD) -> np.ndarray:
    """Tile rows of uint8 frames ``(N, h, w, c)`` into one RGB image; grayscale becomes RGB.

    >>> image_grid([np.zeros((2, 4, 4, 1), np.uint8)] * 3).shape
    (16, 10, 3)
    """
    n_cols = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    grid = np.full((len(rows) * (h + pad) - pad, n_cols * (w + pad) - pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            grid[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = frame  # broadcasts c=1
    return grid


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB uint8 image ``(H, W, 3)`` as a PNG, atomically."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


@torch.no_grad()
def reconstruction_grid(vae: ConvVAE, x: torch.Tensor) -> np.ndarray:
    """Frames ``x`` (float ``(N, C, H, W)`` in [0, 1]) above their reconstructions from the latent mean."""
    mu, _ = vae.encode(x)  # (N, z)
    return image_grid([tensor_to_frames(x), tensor_to_frames(vae.decode(mu))])


@torch.no_grad()
def prior_samples(vae: ConvVAE, n: int, generator: torch.Generator, rows: int = 2) -> np.ndarray:
    """``n`` frames decoded from ``z ~ N(0, I)``, in ``rows`` rows."""
    device = next(vae.parameters()).device
    z = torch.randn(n, vae.config.latent_dim, generator=generator).to(device)  # (n, z)
    frames = tensor_to_frames(vae.decode(z))
    return image_grid(np.array_split(frames, rows))


def most_active_dims(kl_per_dim: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` dimensions with the largest KL, largest first.

    >>> most_active_dims(np.array([0.1, 3.0, 0.0, 1.0]), 2).tolist()
    [1, 3]
    """
    return np.argsort(-np.asarray(kl_per_dim), kind="stable")[:k]


@torch.no_grad()
def latent_traversal(
    vae: ConvVAE, x0: torch.Tensor, kl_per_dim: np.ndarray, k: int = 6, steps: int = 9, span: float = 3.0
) -> np.ndarray:
    """One row per most-active dimension: the frame ``x0`` ``(1, C, H, W)`` decoded with that
    dimension of its latent mean swept over ``[-span, span]`` (prior standard deviations)."""
    mu, _ = vae.encode(x0)  # (1, z)
    values = torch.linspace(-span, span, steps, device=mu.device)
    rows = []
    for d in most_active_dims(kl_per_dim, k):
        z = mu.repeat(steps, 1)  # (steps, z)
        z[:, int(d)] = values
        rows.append(tensor_to_frames(vae.decode(z)))
    return image_grid(rows)


def kl_bar_chart(kl_per_dim: np.ndarray, threshold: float) -> np.ndarray:
    """A bar chart of mean KL (nats) per latent dimension, with the active threshold, as RGB uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kl = np.asarray(kl_per_dim, dtype=np.float64)
    fig = Figure(figsize=(max(4.0, 0.22 * len(kl)), 2.6), dpi=100)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(kl)), kl, color=np.where(kl > threshold, "tab:blue", "tab:gray"))
    ax.axhline(threshold, color="tab:red", linewidth=0.8, label=f"active > {threshold:g} nats")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_xlim(-0.7, len(kl) - 0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def linear_probe_r2(
    z_train: np.ndarray, s_train: np.ndarray, z_val: np.ndarray, s_val: np.ndarray, ridge: float = 1e-3
) -> np.ndarray:
    """Held-out R^2 per state variable of a ridge-regularised linear map from latents to states.

    Fitted by least squares (with a bias) on ``(z_train, s_train)``, scored on ``(z_val, s_val)``.
    A variable that is constant on the held-out set gets NaN (R^2 is undefined there).

    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(200, 3))
    >>> s = np.stack([z @ [1.0, -2.0, 0.5], rng.normal(size=200)], axis=1)
    >>> r2 = linear_probe_r2(z[:150], s[:150], z[150:], s[150:])
    >>> bool(r2[0] > 0.99), bool(r2[1] < 0.2)
    (True, True)
    """
    z_train, z_val = np.asarray(z_train, np.float64), np.asarray(z_val, np.float64)
    s_train, s_val = np.asarray(s_train, np.float64), np.asarray(s_val, np.float64)
    mean, std = z_train.mean(0), z_train.std(0) + 1e-8
    a_train = np.hstack([(z_train - mean) / std, np.ones((len(z_train), 1))])
    a_val = np.hstack([(z_val - mean) / std, np.ones((len(z_val), 1))])
    reg = ridge * len(z_train) * np.eye(a_train.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the bias
    weights = np.linalg.solve(a_train.T @ a_train + reg, a_train.T @ s_train)  # (z + 1, d)
    residual = ((a_val @ weights - s_val) ** 2).sum(0)
    total = ((s_val - s_val.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 1e-12, 1.0 - residual / np.maximum(total, 1e-300), np.nan)
