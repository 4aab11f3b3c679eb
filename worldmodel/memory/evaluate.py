"""Held-out diagnostics of the memory model, on the posterior means, against simple baselines.

- the mixture NLL per latent dimension against two baselines fitted to the training
  episodes in the same run: *copy* (``z_{t+1} ~ N(z_t, s^2)``, ``s`` the per-dimension RMS
  step) and *gaussian* (``z_{t+1} ~ N(m, v)``, the per-dimension mean and variance);
- open-loop next-latent RMSE at 1, 5 and 20 steps (the model fed its own mixture means and
  the real actions from starts every ``OPEN_LOOP_STRIDE`` steps) against copying the start;
- reward MSE against predicting the training mean; episode-end BCE against the training
  end rate, and the share of ends predicted (p > 0.5) and of false alarms;
- :func:`rollout_strip`: real frames, their VAE decodings and those of an open-loop rollout.

>>> import torch
>>> float(gaussian_nll(torch.zeros(1), torch.zeros(1), torch.ones(1))[0])  # log(2 pi) / 2
0.9189385175704956
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from worldmodel.frames import tensor_to_frames
from worldmodel.memory.batch import EpisodeBatch, load_batch
from worldmodel.memory.model import LOG_STD_MIN, MDNRNN, dream, mixture_log_prob
from worldmodel.memory.sequences import LatentSequences
from worldmodel.training.distributed import DistContext, all_reduce_sum, all_reduce_values
from worldmodel.vae.diagnostics import image_grid
from worldmodel.vae.model import ConvVAE

OPEN_LOOP_HORIZONS = (1, 5, 20)
OPEN_LOOP_STRIDE = 10
"""Open-loop rollouts start every this many steps of each held-out episode."""
BASELINE_MAX_EPISODES = 1000
"""Fit the baselines on at most this many training episodes, evenly spread."""
MIN_STD = math.exp(LOG_STD_MIN)
"""The baselines' smallest standard deviation: the memory model's."""


@dataclass(frozen=True)
class Baselines:
    """Per-dimension statistics of the training episodes' latent means, steps, rewards and ends."""

    step_rms: np.ndarray
    """``(z,)`` RMS of z_{t+1} - z_t: the copy baseline's scale."""
    mean: np.ndarray
    """``(z,)`` mean of z_{t+1}."""
    std: np.ndarray
    """``(z,)`` standard deviation of z_{t+1}."""
    reward_mean: float
    end_rate: float


def fit_baselines(latents: LatentSequences, rows: np.ndarray) -> Baselines:
    """The baselines' statistics over (at most ``BASELINE_MAX_EPISODES`` of) the training episodes ``rows``."""
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), BASELINE_MAX_EPISODES)).round().astype(np.int64)]
    z = latents.latent_dim
    n, sq_step, total, sq = 0, np.zeros(z), np.zeros(z), np.zeros(z)
    rewards, ends = [], []
    for row in rows:
        ep = latents.episode(int(row))
        mu = np.asarray(ep.mu, np.float64)
        n += len(mu) - 1
        sq_step += ((mu[1:] - mu[:-1]) ** 2).sum(0)
        total += mu[1:].sum(0)
        sq += (mu[1:] ** 2).sum(0)
        rewards.append(ep.rewards)
        ends.append(ep.terminated)
    mean = total / n
    return Baselines(
        step_rms=np.maximum(np.sqrt(sq_step / n), MIN_STD),
        mean=mean,
        std=np.maximum(np.sqrt(np.maximum(sq / n - mean**2, 0.0)), MIN_STD),
        reward_mean=float(np.concatenate(rewards).mean()),
        end_rate=float(np.clip(np.concatenate(ends).mean(), 1e-6, 1 - 1e-6)),
    )


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Elementwise negative log-density of ``x`` under ``N(mean, std^2)``."""
    return 0.5 * ((x - mean) / std).pow(2) + torch.log(std) + 0.5 * math.log(2 * math.pi)


@torch.no_grad()
def evaluate(
    model: MDNRNN, latents: LatentSequences, rows: np.ndarray, base: Baselines, batch_size: int, ctx: DistContext
) -> dict[str, Any]:
    """Held-out metrics on the posterior means (see the module docstring); per-dimension NLLs as lists.

    Each rank evaluates every ``world_size``-th episode of ``rows``; the sums are added over all ranks.
    """
    device, rows = ctx.device, rows[ctx.rank :: ctx.world_size]
    model.eval()
    z = latents.latent_dim
    step_rms, mean, std = (torch.as_tensor(v, dtype=torch.float32, device=device) for v in
                           (base.step_rms, base.mean, base.std))  # fmt: skip
    nll, nll_copy, nll_gauss = (torch.zeros(z, dtype=torch.float64) for _ in range(3))
    sums = dict.fromkeys(
        ("steps", "reward", "reward_base", "end", "end_base", "ends", "hits", "non_ends", "alarms"), 0.0
    )
    sq_err = {(k, which): 0.0 for k in OPEN_LOOP_HORIZONS for which in ("model", "copy")}
    counts = dict.fromkeys(OPEN_LOOP_HORIZONS, 0)
    for start in range(0, len(rows), batch_size):
        batch = load_batch(latents, rows[start : start + batch_size], model, device)
        t = batch.mask.shape[1]
        out = model(batch.mu[:, :t], batch.actions)
        target, w = batch.mu[:, 1:], batch.mask.unsqueeze(-1).double()  # (B, T, z), (B, T, 1)
        nll += (-mixture_log_prob(out, target).double() * w).sum((0, 1)).cpu()
        nll_copy += (gaussian_nll(target, batch.mu[:, :t], step_rms).double() * w).sum((0, 1)).cpu()
        nll_gauss += (gaussian_nll(target, mean, std).double() * w).sum((0, 1)).cpu()
        m = batch.mask.double()
        end_prob = torch.sigmoid(out.end_logit.double())
        rate = torch.full_like(end_prob, base.end_rate)
        sums["steps"] += float(m.sum())
        sums["reward"] += float(((out.reward.double() - batch.rewards.double()).pow(2) * m).sum())
        sums["reward_base"] += float(((base.reward_mean - batch.rewards.double()).pow(2) * m).sum())
        sums["end"] += float((F.binary_cross_entropy(end_prob, batch.ends.double(), reduction="none") * m).sum())
        sums["end_base"] += float((F.binary_cross_entropy(rate, batch.ends.double(), reduction="none") * m).sum())
        sums["ends"] += float((batch.ends.double() * m).sum())
        sums["hits"] += float(((end_prob > 0.5) * batch.ends.double() * m).sum())
        sums["non_ends"] += float(((1 - batch.ends.double()) * m).sum())
        sums["alarms"] += float(((end_prob > 0.5) * (1 - batch.ends.double()) * m).sum())
        open_loop(model, batch, sq_err, counts)
    model.train()
    nll, nll_copy, nll_gauss = (all_reduce_sum(v.to(device), ctx).cpu() for v in (nll, nll_copy, nll_gauss))
    sums, sq_err, counts = (all_reduce_values(d, ctx) for d in (sums, sq_err, counts))
    n = sums["steps"]
    result: dict[str, Any] = {
        "nll": float(nll.sum() / (n * z)),
        "nll_copy": float(nll_copy.sum() / (n * z)),
        "nll_gaussian": float(nll_gauss.sum() / (n * z)),
        "reward_mse": sums["reward"] / n,
        "reward_mse_mean": sums["reward_base"] / n,
        "end_bce": sums["end"] / n,
        "end_bce_rate": sums["end_base"] / n,
        "end_recall": sums["hits"] / sums["ends"] if sums["ends"] else None,
        "end_false_alarm": sums["alarms"] / sums["non_ends"] if sums["non_ends"] else None,
    }
    for k in OPEN_LOOP_HORIZONS:
        for which in ("model", "copy"):
            result[f"open_loop_{which}_rmse@{k}"] = math.sqrt(sq_err[k, which] / counts[k]) if counts[k] else None
    result["nll_per_dim"] = (nll / n).tolist()
    result["nll_copy_per_dim"] = (nll_copy / n).tolist()
    result["nll_gaussian_per_dim"] = (nll_gauss / n).tolist()
    return result


def open_loop(model: MDNRNN, batch: EpisodeBatch, sq_err: dict, counts: dict) -> None:
    """Add the squared errors of open-loop rollouts from every ``OPEN_LOOP_STRIDE``-th step of ``batch``."""
    t, horizon = batch.mask.shape[1], max(OPEN_LOOP_HORIZONS)
    state, done = None, 0
    for t0 in range(0, t, OPEN_LOOP_STRIDE):
        if t0 > done:  # teacher-forced up to t0: the state after z_{t0-1}, a_{t0-1}
            state = model(batch.mu[:, done:t0], batch.actions[:, done:t0], state).state
            done = t0
        z_hat = dream(model, batch.mu[:, t0], batch.actions[:, t0 : t0 + horizon], state)  # (B, K, z)
        for k in OPEN_LOOP_HORIZONS:
            if k > z_hat.shape[1]:
                break
            valid = (batch.lengths >= t0 + k).double()  # (B,)
            real = batch.mu[:, t0 + k]  # (B, z)
            sq_err[k, "model"] += float(((z_hat[:, k - 1] - real).double().pow(2).mean(-1) * valid).sum())
            sq_err[k, "copy"] += float(((batch.mu[:, t0] - real).double().pow(2).mean(-1) * valid).sum())
            counts[k] += int(valid.sum())


@torch.no_grad()
def rollout_strip(
    model: MDNRNN, vae: ConvVAE, frames: np.ndarray, mu: np.ndarray, actions: torch.Tensor, start: int, steps: int
) -> np.ndarray:
    """Three rows of ``steps`` frames after ``start``: the real frames, the VAE's decodings of their latent
    means, and the decodings of the memory model's open-loop rollout from ``start`` with the same actions.

    ``frames`` uint8 ``(T + 1, h, w, c)`` and ``mu`` ``(T + 1, z)`` are one episode's; ``actions`` its
    ``(T, a)`` action vectors. The model reads the real latents up to ``start``.
    """
    device = next(model.parameters()).device
    z = torch.as_tensor(np.array(mu), device=device).unsqueeze(0)  # (1, T + 1, z)
    a = actions.to(device).unsqueeze(0)  # (1, T, a)
    state = model(z[:, :start], a[:, :start]).state if start else None
    dreamt = dream(model, z[:, start], a[:, start : start + steps], state)[0]  # (K, z)
    real = z[0, start + 1 : start + 1 + steps]  # (K, z)
    return image_grid([np.asarray(frames[start + 1 : start + 1 + steps]), tensor_to_frames(vae.decode(real)),
                       tensor_to_frames(vae.decode(dreamt))])  # fmt: skip
