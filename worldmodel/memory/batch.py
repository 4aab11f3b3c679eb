"""Whole latent episodes, padded into batches for the memory model: its training and held-out data.

>>> from worldmodel.memory.model import MDNRNN, MemoryConfig
>>> model = MDNRNN(MemoryConfig(latent_dim=2, action_dim=3, discrete_actions=True, hidden=4))
>>> action_vectors(model, np.array([[0, 2]]), (1, 2)).tolist()
[[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldmodel.memory.model import MDNRNN
from worldmodel.memory.sequences import LatentSequences


@dataclass(frozen=True)
class EpisodeBatch:
    """Whole episodes, padded to the longest: ``T`` steps, ``T + 1`` latents."""

    mu: torch.Tensor
    """``(B, T + 1, z)``"""
    logvar: torch.Tensor
    """``(B, T + 1, z)``"""
    actions: torch.Tensor
    """``(B, T, a)`` float action vectors."""
    rewards: torch.Tensor
    """``(B, T)``"""
    ends: torch.Tensor
    """``(B, T)`` 1.0 where the episode terminates."""
    mask: torch.Tensor
    """``(B, T)`` bool: real steps (not padding)."""
    lengths: torch.Tensor
    """``(B,)`` steps per episode."""


def load_batch(
    latents: LatentSequences, rows: np.ndarray, model: MDNRNN, device: torch.device, steps: int | None = None
) -> EpisodeBatch:
    """Episodes ``rows`` padded to ``steps`` steps (default: the longest of them)."""
    episodes = [latents.episode(int(r)) for r in rows]
    lengths = np.array([len(ep.rewards) for ep in episodes], np.int64)
    b, t, z = len(rows), steps or int(lengths.max()), latents.latent_dim
    mu, logvar = np.zeros((b, t + 1, z), np.float32), np.zeros((b, t + 1, z), np.float32)
    actions = np.zeros((b, t, *latents.action_shape), latents.action_dtype)
    rewards, ends = np.zeros((b, t), np.float32), np.zeros((b, t), np.float32)
    for i, ep in enumerate(episodes):
        n = lengths[i]
        mu[i, : n + 1], logvar[i, : n + 1] = ep.mu, ep.logvar
        actions[i, :n], rewards[i, :n], ends[i, :n] = ep.actions, ep.rewards, ep.terminated
    mask = np.arange(t)[None] < lengths[:, None]  # (B, T)
    as_tensor = lambda x: torch.from_numpy(x).to(device)  # noqa: E731
    return EpisodeBatch(as_tensor(mu), as_tensor(logvar), action_vectors(model, actions, (b, t)).to(device),
                  as_tensor(rewards), as_tensor(ends), as_tensor(mask), as_tensor(lengths))  # fmt: skip


def action_vectors(model: MDNRNN, actions: np.ndarray, lead: tuple[int, ...]) -> torch.Tensor:
    """Float action vectors ``(*lead, a)`` of the stored actions ``(*lead, *action_shape)``."""
    if model.config.discrete_actions:
        return model.action_input(torch.from_numpy(np.asarray(actions)))
    return model.action_input(torch.from_numpy(np.asarray(actions).reshape(*lead, -1)))
