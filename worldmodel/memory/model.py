"""The memory model of World Models ("M"): an MDN-RNN over VAE latents, its loss and its checkpoints.

Given the latent ``z_t`` of a frame and the action ``a_t`` taken there, an LSTM updates its
state ``h_t`` and predicts a mixture of Gaussians over the next latent ``z_{t+1}``, the
reward of the step and whether the episode terminates with it. Agents read ``[z_t, h_t]``.

>>> import torch
>>> model = MDNRNN(MemoryConfig(latent_dim=4, action_dim=3, hidden=8))
>>> out = model(torch.zeros(2, 5, 4), torch.zeros(2, 5, 3))  # (B, T, z), (B, T, a)
>>> out.logits.shape, out.hidden.shape, out.reward.shape
(torch.Size([2, 5, 4, 5]), torch.Size([2, 5, 8]), torch.Size([2, 5]))
>>> sample(out, temperature=1.0).shape
torch.Size([2, 5, 4])
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from worldmodel.common.device import cpu_runs_bf16_lstm
from worldmodel.common.dictconfig import DictConfig
from worldmodel.vae.checkpoint import (
    CheckpointError,
    FileFormat,
    clean_state_dict,
    read_format_header,
    read_tensors,
    save_tensors,
)

LOG_STD_MIN = -7.0
LOG_STD_MAX = 4.0
MEMORY_FORMAT = FileFormat(
    "worldmodel.memory",  # the header every memory checkpoint carries: never rename it
    1,
    "memory checkpoint",
    "`worldmodel train-memory` or worldmodel.memory.model.save_memory",
    "`worldmodel train-memory --resume` continues from the last good checkpoint",
)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class MemoryConfig(DictConfig):
    """Architecture and loss settings of :class:`MDNRNN`."""

    latent_dim: int
    """Size of the VAE latent z it models."""
    action_dim: int
    """Size of the action vector it reads (the number of actions for one-hot discrete actions)."""
    discrete_actions: bool = False
    """Actions are integer indices, one-hot encoded to action_dim (else float vectors of action_dim)."""
    hidden: int = 256
    """LSTM units (256 in World Models)."""
    mixtures: int = 5
    """Gaussian components per latent dimension (5 in World Models)."""
    residual: bool = True
    """Predict component means as offsets from z_t (copying the last latent is then the starting point);
    False predicts them outright, as World Models."""
    reward_weight: float = 1.0
    """Weight of the reward MSE in the total loss."""
    end_weight: float = 1.0
    """Weight of the episode-end BCE in the total loss."""

    def __post_init__(self) -> None:
        if min(self.latent_dim, self.action_dim, self.hidden, self.mixtures) <= 0:
            raise ValueError(
                f"MemoryConfig latent_dim, action_dim, hidden and mixtures must be positive, got {self.latent_dim}, "
                f"{self.action_dim}, {self.hidden} and {self.mixtures}"
            )
        if self.reward_weight < 0 or self.end_weight < 0:
            raise ValueError("MemoryConfig reward_weight and end_weight must be >= 0")


class MemoryOutput(NamedTuple):
    """What :class:`MDNRNN` predicts at each step ``t`` of a ``(B, T)`` sequence."""

    logits: torch.Tensor
    """``(B, T, z, K)`` unnormalised log mixture weights over z_{t+1}, per dimension."""
    means: torch.Tensor
    """``(B, T, z, K)`` component means."""
    log_stds: torch.Tensor
    """``(B, T, z, K)`` component log standard deviations, clamped to [LOG_STD_MIN, LOG_STD_MAX]."""
    reward: torch.Tensor
    """``(B, T)`` predicted reward of step t."""
    end_logit: torch.Tensor
    """``(B, T)`` logit of the episode terminating with step t."""
    hidden: torch.Tensor
    """``(B, T, H)`` LSTM output h_t after reading z_t and a_t."""
    state: tuple[torch.Tensor, torch.Tensor]
    """``(h, c)``, each ``(1, B, H)``: the state after the last step, to continue from."""

    def expected_next(self) -> torch.Tensor:
        """``(B, T, z)`` the mixture mean of z_{t+1}, the prediction for open-loop rollouts."""
        return (self.logits.softmax(-1) * self.means).sum(-1)


class MDNRNN(nn.Module):
    """LSTM over ``[z_t, a_t]`` with a mixture-density head over ``z_{t+1}``, a reward and an end head.

    The mixture is per dimension, as in World Models: each of the z dimensions of ``z_{t+1}``
    has its own K-component one-dimensional Gaussian mixture (its own weights, means and
    scales), and dimensions are independent given ``h_t``. A linear layer maps ``h_t`` to
    the ``3 * z * K`` mixture parameters (with ``residual``, the means as offsets from ``z_t``);
    two more map it to the reward and the end logit.
    """

    def __init__(self, config: MemoryConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.latent_dim + config.action_dim, config.hidden, batch_first=True)
        self.mdn = nn.Linear(config.hidden, 3 * config.latent_dim * config.mixtures)
        self.reward_head = nn.Linear(config.hidden, 1)
        self.end_head = nn.Linear(config.hidden, 1)

    @torch.no_grad()
    def start_as_copy(
        self, step_rms: torch.Tensor, reward_mean: float = 0.0, end_rate: float = 0.5, jitter: float = 0.01
    ) -> None:
        """Before training: predict ``z_{t+1} ~ N(z_t, step_rms^2)`` per dimension, the copy-last baseline, the
        training episodes' mean reward ``reward_mean`` and their episode-end rate ``end_rate``.

        Every component's mean starts at ``z_t`` (the residual offsets' biases zero) and its scale at
        ``step_rms`` (``(z,)``: the RMS of ``z_{t+1} - z_t`` in the training episodes), with equal
        weights; the head's weights keep ``jitter`` of their random start (the mean offsets' also
        scaled by ``step_rms``), so that components can part. Latent dimensions of very different
        scales (an active one against one that barely moves) then start at the right scale instead of
        at 1 each. Needs ``residual``.

        >>> _ = torch.manual_seed(0)
        >>> model = MDNRNN(MemoryConfig(latent_dim=2, action_dim=1, hidden=4, mixtures=3))
        >>> model.start_as_copy(torch.tensor([0.5, 0.001]))
        >>> out = model(torch.ones(1, 1, 2), torch.zeros(1, 1, 1))
        >>> [round(x, 3) for x in out.log_stds.exp().mean(-1).flatten().tolist()]
        [0.5, 0.001]
        >>> bool(torch.allclose(out.means, torch.ones(1, 1, 2, 3), atol=0.01))  # every component at z_t
        True
        """
        cfg = self.config
        if not cfg.residual:
            raise ValueError("start_as_copy needs MemoryConfig(residual=True): means are then offsets from z_t")
        step_rms = torch.as_tensor(step_rms, dtype=torch.float32).clamp(min=math.exp(LOG_STD_MIN))
        weight = self.mdn.weight.view(cfg.latent_dim, 3, cfg.mixtures, cfg.hidden)
        bias = self.mdn.bias.view(cfg.latent_dim, 3, cfg.mixtures)
        weight.mul_(jitter)
        weight[:, 1] *= step_rms.view(-1, 1, 1)
        bias[:, :2] = 0.0
        bias[:, 2] = step_rms.log().view(-1, 1)
        for head, value in ((self.reward_head, reward_mean), (self.end_head, math.log(end_rate / (1 - end_rate)))):
            head.weight.mul_(jitter)
            head.bias.fill_(value)

    def action_input(self, actions: torch.Tensor) -> torch.Tensor:
        """The float action vectors ``(..., a)`` the LSTM reads: one-hot for discrete index tensors ``(...)``."""
        cfg = self.config
        if cfg.discrete_actions:
            if torch.is_floating_point(actions):
                raise ValueError(f"expected integer action indices for discrete actions, got dtype {actions.dtype}")
            if actions.numel() and (actions.min() < 0 or actions.max() >= cfg.action_dim):
                raise ValueError(
                    f"action indices must lie in [0, {cfg.action_dim}), got min {int(actions.min())} max "
                    f"{int(actions.max())}; the memory model was made for {cfg.action_dim} actions"
                )
            return F.one_hot(actions.long(), cfg.action_dim).float()
        if actions.shape[-1:] != (cfg.action_dim,):
            raise ValueError(f"expected action vectors of size {cfg.action_dim}, got shape {tuple(actions.shape)}")
        return actions.float()

    def _lstm(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The LSTM over ``x``; in fp32 under bf16 autocast on a CPU that cannot run a bf16 LSTM."""
        if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu") or cpu_runs_bf16_lstm():
            return self.lstm(x, state)
        with torch.autocast("cpu", enabled=False):
            return self.lstm(x.float(), None if state is None else (state[0].float(), state[1].float()))

    def forward(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> MemoryOutput:
        """Read latents ``(B, T, z)`` and float action vectors ``(B, T, a)`` (see :meth:`action_input`)."""
        cfg = self.config
        if z.ndim != 3 or z.shape[-1] != cfg.latent_dim:
            raise ValueError(f"expected latents of shape (B, T, {cfg.latent_dim}), got {tuple(z.shape)}")
        if actions.shape != (*z.shape[:2], cfg.action_dim):
            raise ValueError(
                f"expected actions of shape {(*z.shape[:2], cfg.action_dim)} for latents {tuple(z.shape)}, "
                f"got {tuple(actions.shape)}"
            )
        hidden, state = self._lstm(torch.cat([z, actions.to(z.dtype)], -1), state)  # (B, T, H)
        b, t = z.shape[:2]
        params = self.mdn(hidden).view(b, t, cfg.latent_dim, 3, cfg.mixtures)  # (B, T, z, 3, K)
        logits, means, log_stds = params.unbind(3)  # (B, T, z, K) each
        if cfg.residual:
            means = means + z.unsqueeze(-1)
        return MemoryOutput(
            logits=logits,
            means=means,
            log_stds=log_stds.clamp(LOG_STD_MIN, LOG_STD_MAX),
            reward=self.reward_head(hidden).squeeze(-1),  # (B, T)
            end_logit=self.end_head(hidden).squeeze(-1),  # (B, T)
            hidden=hidden,
            state=state,
        )


def mixture_log_prob(out: MemoryOutput, target: torch.Tensor) -> torch.Tensor:
    """``(B, T, z)`` log density of ``target`` ``(B, T, z)`` under each dimension's mixture, in fp32.

    ``log sum_k pi_k N(x; mu_k, sigma_k)`` by log-sum-exp over the K components.
    """
    logits, means, log_stds = out.logits.float(), out.means.float(), out.log_stds.float()
    x = target.float().unsqueeze(-1)  # (B, T, z, 1)
    log_normal = -0.5 * ((x - means) * torch.exp(-log_stds)).pow(2) - log_stds - _LOG_SQRT_2PI  # (B, T, z, K)
    return torch.logsumexp(logits.log_softmax(-1) + log_normal, -1)


class MemoryLoss(NamedTuple):
    """Terms of :func:`memory_loss`, each a scalar mean over the valid steps unless said."""

    total: torch.Tensor
    """``nll + reward_weight * reward + end_weight * end``: what is minimised."""
    nll: torch.Tensor
    """Mixture negative log-likelihood of z_{t+1}, in nats per latent dimension."""
    reward: torch.Tensor
    """Squared error of the predicted reward."""
    end: torch.Tensor
    """Binary cross-entropy of the episode-end prediction."""
    nll_per_dim: torch.Tensor
    """``(z,)`` the NLL of each latent dimension."""


def memory_loss(
    out: MemoryOutput,
    z_next: torch.Tensor,
    reward: torch.Tensor,
    end: torch.Tensor,
    config: MemoryConfig,
    mask: torch.Tensor | None = None,
) -> MemoryLoss:
    """The MDN-RNN objective over ``(B, T)`` steps, always computed in fp32 (also under autocast).

    ``z_next`` ``(B, T, z)`` is the latent after step t, ``reward`` ``(B, T)`` its reward, ``end``
    ``(B, T)`` 1.0 where the episode terminates with it; ``mask`` ``(B, T)`` (bool) marks the
    steps that count (padding of shorter episodes does not).

    >>> cfg = MemoryConfig(latent_dim=2, action_dim=1, hidden=4)
    >>> out = MDNRNN(cfg)(torch.zeros(1, 3, 2), torch.zeros(1, 3, 1))
    >>> loss = memory_loss(out, torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 3), cfg)
    >>> loss.nll_per_dim.shape
    torch.Size([2])
    """
    if mask is None:
        mask = torch.ones(reward.shape, dtype=torch.bool, device=reward.device)
    weights = mask.float()  # (B, T)
    count = weights.sum().clamp(min=1.0)
    nll_elem = -mixture_log_prob(out, z_next)  # (B, T, z)
    nll_per_dim = (nll_elem * weights.unsqueeze(-1)).sum((0, 1)) / count  # (z,)
    nll = nll_per_dim.mean()
    reward_err = ((out.reward.float() - reward.float()).pow(2) * weights).sum() / count
    end_bce = F.binary_cross_entropy_with_logits(out.end_logit.float(), end.float(), reduction="none")  # (B, T)
    end_bce = (end_bce * weights).sum() / count
    total = nll + config.reward_weight * reward_err + config.end_weight * end_bce
    return MemoryLoss(total=total, nll=nll, reward=reward_err, end=end_bce, nll_per_dim=nll_per_dim.detach())


def sample(out: MemoryOutput, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw z_{t+1} ``(B, T, z)`` from the mixtures at ``temperature``.

    As in World Models: mixture weights are ``softmax(logits / temperature)`` and each
    component's standard deviation is scaled by ``sqrt(temperature)``; 0 gives the mean of
    the most likely component.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits, means, log_stds = out.logits.float(), out.means.float(), out.log_stds.float()
    if temperature == 0:
        return means.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
    probs = (logits / temperature).softmax(-1)  # (B, T, z, K)
    k = torch.multinomial(probs.reshape(-1, probs.shape[-1]).cpu(), 1, generator=generator)
    k = k.view(*probs.shape[:-1], 1).to(means.device)  # (B, T, z, 1)
    eps = torch.randn(means.shape[:-1], generator=generator).to(means.device)  # (B, T, z)
    mean, log_std = means.gather(-1, k).squeeze(-1), log_stds.gather(-1, k).squeeze(-1)  # (B, T, z)
    return mean + eps * torch.exp(log_std) * math.sqrt(temperature)


@torch.no_grad()
def dream(
    model: MDNRNN,
    z0: torch.Tensor,
    actions: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Roll the model forward open loop: ``(B, K, z)`` predicted ``z_1 .. z_K`` from ``z0`` ``(B, z)``.

    Each step feeds the previous prediction (the mixture mean) and the next of the given
    action vectors ``(B, K, a)``; ``state`` is the LSTM state before reading ``z0``.

    >>> model = MDNRNN(MemoryConfig(latent_dim=2, action_dim=1, hidden=4))
    >>> dream(model, torch.zeros(3, 2), torch.zeros(3, 5, 1)).shape
    torch.Size([3, 5, 2])
    """
    z, out = z0.unsqueeze(1), []  # (B, 1, z)
    for k in range(actions.shape[1]):
        step = model(z, actions[:, k : k + 1], state)
        z, state = step.expected_next(), step.state  # (B, 1, z)
        out.append(z)
    return torch.cat(out, 1)


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True)
class MemoryCheckpoint:
    """What :func:`load_memory` returns: the model in eval mode and what it was trained on."""

    model: MDNRNN
    vae_sha256: str
    """SHA-256 of the VAE checkpoint whose latents it models."""
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def save_memory(path: str | os.PathLike, model: nn.Module, *, vae_sha256: str, **metadata: Any) -> None:
    """Write ``model`` with its config, the VAE's SHA-256 and JSON ``metadata`` to ``path`` atomically.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "memory.safetensors"
    >>> save_memory(path, MDNRNN(MemoryConfig(latent_dim=4, action_dim=2)), vae_sha256="ab" * 32, step=0)
    >>> ckpt = load_memory(path, vae_sha256="ab" * 32)
    >>> ckpt.model.config.hidden, ckpt.metadata["step"]
    (256, 0)
    """
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    header = {
        "format": MEMORY_FORMAT.name,
        "format_version": str(MEMORY_FORMAT.version),
        "memory_config": json.dumps(inner.config.to_dict()),
        "vae_sha256": vae_sha256,
        "metadata": json.dumps(metadata),
    }
    save_tensors(path, clean_state_dict(model), header)


def load_memory(
    path: str | os.PathLike,
    device: torch.device | str = "cpu",
    *,
    vae_sha256: str | None = None,
    latent_dim: int | None = None,
) -> MemoryCheckpoint:
    """Rebuild the memory model (in eval mode, on ``device``) from a checkpoint file.

    With ``vae_sha256`` (the VAE checkpoint it will read latents of) or ``latent_dim``, a
    checkpoint trained for another VAE is refused with a :class:`CheckpointError` naming both.
    """
    path = Path(path)
    header = read_format_header(path, MEMORY_FORMAT)
    tensors = read_tensors(path, MEMORY_FORMAT)
    try:
        config = MemoryConfig.from_dict(json.loads(header["memory_config"]))
        saved_sha = header["vae_sha256"]
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has malformed checkpoint metadata: {exc}") from exc
    if vae_sha256 is not None and vae_sha256 != saved_sha:
        raise CheckpointError(
            f"the memory model {path} was trained on the latents of the VAE with SHA-256 {saved_sha}, but the VAE "
            f"given has SHA-256 {vae_sha256}; use the VAE it was trained with, or train a memory model on this one"
        )
    if latent_dim is not None and latent_dim != config.latent_dim:
        raise CheckpointError(
            f"the memory model {path} models latents of size {config.latent_dim}, but the VAE given has "
            f"latent_dim {latent_dim}; use the VAE it was trained with, or train a memory model on this one"
        )
    model = MDNRNN(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored MemoryConfig {config}: {exc}") from exc
    return MemoryCheckpoint(model=model.to(device).eval(), vae_sha256=saved_sha, metadata=metadata, path=path)
