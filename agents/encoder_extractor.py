"""``train-agent --encoder finetune``: the VAE encoder inside the policy, trained by the RL loss.

:class:`VAEEncoderExtractor` is an SB3 ``BaseFeaturesExtractor`` whose weights start as a
copy of a VAE checkpoint (encoder, latent heads and decoder, via
:func:`worldmodel.vae.checkpoint.load_vae`); its features are the posterior means of the
frames in each observation, so before any update they equal
:class:`worldmodel.vae.encoder.LatentEncoder`'s ``mean`` latents (standardised and with
inactive dimensions dropped when asked, with the checkpoint's statistics).

What it expects (the ``finetune`` stack of :func:`agents.vec_env.build_vec_env`):

- **uint8 frames preprocessed by the checkpoint's FrameSpec** (``FrameSpecObservation`` in
  each env), ``VecFrameStack(history)`` stacking them along the channels, then an
  explicit ``VecTransposeImage``: observations are channels-first ``(history * c, h, w)``
  uint8, so SB3 sees an image space that is already transposed and inserts nothing.
- **a policy built with** ``normalize_images=False`` (:func:`finetune_policy_kwargs` sets it):
  SB3 then only casts the uint8 batch to float and this extractor divides by 255, the
  scaling of :func:`worldmodel.frames.frames_to_tensor`.

The history's frames go through the shared encoder one by one and their means are
concatenated, oldest first, as ``LatentHistory`` concatenates frozen latents.

SB3's actor-critic policies re-initialise their features extractor orthogonally
(``ortho_init``); :meth:`VAEEncoderExtractor.apply` keeps the VAE's weights through that.

``aux_recon_weight > 0`` keeps the VAE objective (reconstruction + beta * KL per image,
:func:`worldmodel.vae.model.vae_loss`) as an auxiliary loss on each training batch's newest
frames: :class:`AddLoss` returns the features unchanged but sends gradient 1 into the
weighted VAE loss whenever gradient flows back through them, which adds it to whatever
RL loss the features feed (PPO's, A2C's, SAC's critic and actor losses, ...) without
touching the algorithms' train loops. Rollout collection and ``predict`` (no gradient)
skip it.

>>> import tempfile, pathlib
>>> import numpy as np, torch
>>> from gymnasium import spaces
>>> from worldmodel.vae.checkpoint import save_vae
>>> from worldmodel.frames import FrameSpec
>>> from worldmodel.vae.model import ConvVAE, VAEConfig
>>> path = pathlib.Path(tempfile.mkdtemp()) / "vae.safetensors"
>>> save_vae(path, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
>>> space = spaces.Box(0, 255, (2 * 3, 16, 16), np.uint8)  # 2 stacked RGB frames, channels first
>>> extractor = VAEEncoderExtractor(space, vae=str(path), history=2)
>>> extractor.features_dim
8
>>> extractor(torch.zeros(5, 6, 16, 16)).shape
torch.Size([5, 8])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from worldmodel.frames import FrameSpec, frames_to_tensor, tensor_to_frames
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.model import ConvVAE, vae_loss

ENCODER_MODES = ("frozen", "finetune")
EXTRACTOR_KEYS = ("features_extractor_class", "features_extractor_kwargs", "normalize_images")
MIN_STD = 1e-6  # as worldmodel.vae.encoder


class AddLoss(torch.autograd.Function):
    """Identity on ``features``; its backward also sends gradient 1 into the scalar ``loss``.

    So ``AddLoss.apply(f, aux)`` adds ``aux`` to any objective computed from ``f``.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> f = AddLoss.apply(3 * w, w**2)  # objective f = 3w, plus w^2 through AddLoss
    >>> f.backward()
    >>> float(w.grad)  # 3 + 2w
    7.0
    """

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        ctx.loss_like = (loss.shape, loss.dtype, loss.device)
        return features.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape, dtype, device = ctx.loss_like
        return grad, torch.ones(shape, dtype=dtype, device=device)


class VAEEncoderExtractor(BaseFeaturesExtractor):
    """Features = posterior means of the ``history`` stacked frames, from a trainable copy of a VAE.

    Args:
        observation_space: ``Box(0, 255, (history * c, h, w), uint8)``, channels first
            (the finetune stack's; see the module docstring).
        vae: VAE checkpoint path; weights and frame spec come from it.
        history: frames stacked in each observation.
        standardize: standardise the means with the checkpoint's latent statistics
            (fixed, like ``--standardize-latents`` on the frozen path).
        drop_inactive: keep only the dimensions the statistics mark active.
        aux_recon_weight: weight of the VAE loss added to the training loss (0: off).
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        vae: str | os.PathLike,
        history: int = 1,
        standardize: bool = False,
        drop_inactive: bool = False,
        aux_recon_weight: float = 0.0,
    ) -> None:
        checkpoint = load_vae(vae, device="cpu")
        spec = checkpoint.frame_spec
        expected = (history * spec.channels, spec.height, spec.width)
        if (
            not isinstance(observation_space, spaces.Box)
            or observation_space.dtype != np.uint8
            or observation_space.shape != expected
        ):
            raise ValueError(
                f"VAEEncoderExtractor for {vae} with history {history} needs channels-first uint8 frames of shape "
                f"{expected}, got {observation_space}; build the env with agents.vec_env.build_vec_env and "
                "StackConfig(encoder='finetune') (FrameSpecObservation, VecFrameStack, VecTransposeImage)"
            )
        if aux_recon_weight < 0:
            raise ValueError(f"aux_recon_weight must be >= 0, got {aux_recon_weight}")
        stats = checkpoint.latent_stats
        if (standardize or drop_inactive) and stats is None:
            raise ValueError(
                f"standardize/drop_inactive need latent statistics, but {vae} has none; use a checkpoint "
                "written by `worldmodel train-vae`, or drop --standardize-latents/--drop-inactive"
            )
        z = checkpoint.vae.config.latent_dim
        keep = np.flatnonzero(stats.active) if drop_inactive else np.arange(z)
        if keep.size == 0:
            raise ValueError(f"{vae} marks no latent dimension active; drop --drop-inactive")
        super().__init__(observation_space, features_dim=history * int(keep.size))
        self.vae: ConvVAE = checkpoint.vae
        self.frame_spec: FrameSpec = spec
        self.history = history
        self.standardize = standardize
        self.aux_recon_weight = float(aux_recon_weight)
        mean = stats.mean if standardize else np.zeros(z)
        std = stats.std if standardize else np.ones(z)
        self.register_buffer("latent_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("latent_std", torch.as_tensor(std, dtype=torch.float32).clamp(min=MIN_STD))
        self.register_buffer("keep", torch.as_tensor(keep, dtype=torch.long))

    def apply(self, fn: Callable[[nn.Module], None]) -> VAEEncoderExtractor:
        """Call ``fn`` on this module only, leaving the VAE's weights as loaded.

        SB3's actor-critic policies (PPO, A2C, ...) re-initialise their features extractor
        with ``features_extractor.apply(init_weights)`` when ``ortho_init`` is on (the
        default), which would replace the VAE encoder by random orthogonal weights.
        """
        fn(self)
        return self

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Features ``(B, history * d)`` of float observations ``(B, history * c, h, w)`` in 0..255."""
        spec, k = self.frame_spec, self.history
        b = observations.shape[0]
        x = observations.reshape(b * k, spec.channels, spec.height, spec.width) / 255.0  # frames_to_tensor's scaling
        mu, logvar = self.vae.encode(x)  # (B*k, z) each
        z = ((mu - self.latent_mean) / self.latent_std).index_select(1, self.keep)  # (B*k, d)
        features = z.reshape(b, -1)  # (B, k*d), oldest frame first
        if self.aux_recon_weight > 0 and self.training and torch.is_grad_enabled():
            newest = slice(k - 1, None, k)  # each frame once: older ones recur in later observations
            x_new, mu_new, logvar_new = x[newest], mu[newest], logvar[newest]
            x_hat = self.vae.decode(ConvVAE.reparameterize(mu_new, logvar_new))  # (B, c, h, w)
            loss = vae_loss(x_new, x_hat, mu_new, logvar_new, self.vae.config).total
            features = AddLoss.apply(features, self.aux_recon_weight * loss)
        return features

    @torch.inference_mode()
    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """Decode the fine-tuned encoder's means of uint8 frames ``(N, h, w, c)`` back to uint8 frames (videos)."""
        device = self.latent_mean.device
        mu, _ = self.vae.encode(frames_to_tensor(frames, self.frame_spec, device))  # (N, z)
        return tensor_to_frames(self.vae.decode(mu))


def finetune_policy_kwargs(
    policy_kwargs: dict[str, Any],
    vae: str | os.PathLike,
    *,
    history: int = 1,
    standardize: bool = False,
    drop_inactive: bool = False,
    aux_recon_weight: float = 0.0,
) -> dict[str, Any]:
    """``policy_kwargs`` plus the extractor and ``normalize_images=False``; the user may not set those keys.

    >>> kwargs = finetune_policy_kwargs({"net_arch": [64]}, "vae.safetensors")
    >>> kwargs["features_extractor_class"].__name__, kwargs["normalize_images"], kwargs["net_arch"]
    ('VAEEncoderExtractor', False, [64])
    """
    clash = sorted(set(policy_kwargs) & set(EXTRACTOR_KEYS))
    if clash:
        raise ValueError(
            f"--encoder finetune sets policy_kwargs {clash} itself (the VAE encoder as features extractor, "
            "images scaled inside it); remove them from --hyperparams"
        )
    extractor_kwargs = {
        "vae": str(vae),
        "history": history,
        "standardize": standardize,
        "drop_inactive": drop_inactive,
        "aux_recon_weight": aux_recon_weight,
    }
    return {
        **policy_kwargs,
        "features_extractor_class": VAEEncoderExtractor,
        "features_extractor_kwargs": extractor_kwargs,
        "normalize_images": False,
    }


def find_extractor(policy: nn.Module) -> VAEEncoderExtractor:
    """The policy's first :class:`VAEEncoderExtractor`: the actor's (SAC, TD3), the Q-net's (DQN), PPO's shared one."""
    for module in policy.modules():
        if isinstance(module, VAEEncoderExtractor):
            return module
    raise ValueError(f"{type(policy).__name__} has no VAEEncoderExtractor: it was not trained with --encoder finetune")
