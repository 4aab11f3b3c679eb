"""Per-env LSTM state of the memory model, advanced by the latent and the action actually taken.

Shared by :class:`envs.memory.gymnasium_env.MemoryObservation` and
:class:`envs.memory.sb3_vec_env.VecMemoryObservation` so they build identical
observations. The observation at time t is ``[z_t, h_t]`` (``[z_t, h_t, c_t]`` with
``include_cell``), where ``h_t`` has read ``(z_0, a_0), ..., (z_{t-1}, a_{t-1})``: zeros at an
episode start, then one batched LSTM step per env step, on the memory model's device.

>>> import numpy as np
>>> from gymnasium import spaces
>>> from worldmodel.memory.model import MDNRNN, MemoryConfig
>>> model = MDNRNN(MemoryConfig(latent_dim=2, action_dim=3, discrete_actions=True, hidden=4))
>>> state = MemoryState(model, num_envs=2, action_space=spaces.Discrete(3))
>>> state.reset(np.ones((2, 2), np.float32))[0]
array([1., 1., 0., 0., 0., 0.], dtype=float32)
>>> state.push(np.zeros((2, 2), np.float32), np.array([0, 2])).shape
(2, 6)
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from envs.latent.encoded_observations import StateFactory
from envs.latent.spec import LatentSpec, LatentSpecLike
from worldmodel.memory.model import MDNRNN, MemoryCheckpoint, load_memory
from worldmodel.vae.checkpoint import file_sha256
from worldmodel.vae.encoder import LatentEncoder

MEMORY_LATENTS = {"latent": "mean", "history": 1, "include_action": False, "normalize": False, "drop_inactive": False}
"""The :class:`LatentSpec` fields a memory model's input fixes: mean latents, every dimension, unnormalised."""


def memory_spec(spec: LatentSpecLike) -> LatentSpec:
    """``spec`` as a :class:`LatentSpec`, checked to give the latents the memory model was trained on.

    Only ``vae``, ``device``, ``precision`` and ``compile`` are free; the memory
    observation ``[z_t, h_t]`` replaces history and previous action.
    """
    spec = LatentSpec.coerce(spec)
    changed = {name: getattr(spec, name) for name, value in MEMORY_LATENTS.items() if getattr(spec, name) != value}
    encoder = spec.vae if isinstance(spec.vae, LatentEncoder) else None
    if encoder is not None:
        options = {"latent": encoder.latent, "normalize": encoder.normalize, "drop_inactive": encoder.drop_inactive}
        changed |= {name: value for name, value in options.items() if value != MEMORY_LATENTS[name]}
    if changed:
        raise ValueError(
            f"the memory model reads mean, unnormalised latents of every dimension, one step at a time, but the "
            f"spec sets {changed}; leave them at {MEMORY_LATENTS} (the hidden state h_t carries the past)"
        )
    return spec


def memory_state(memory: MemoryCheckpoint | str | os.PathLike, include_cell: bool = False) -> StateFactory:
    """The memory wrappers' state factory: a :class:`MemoryState` of ``memory`` checked against the encoder."""

    def make(encoder: LatentEncoder, num_envs: int, action_space: gym.Space) -> MemoryState:
        return MemoryState(memory_model(memory, encoder), num_envs, action_space, include_cell)

    return make


def memory_model(memory: MemoryCheckpoint | str | os.PathLike, encoder: LatentEncoder) -> MDNRNN:
    """The memory model on the encoder's device, checked against the encoder's VAE (latent size and SHA-256)."""
    vae_path = encoder.checkpoint.path
    if vae_path is None:
        raise ValueError("the memory model is tied to its VAE file by SHA-256; pass the VAE as a checkpoint path")
    sha = file_sha256(vae_path)
    if isinstance(memory, MemoryCheckpoint):
        if memory.vae_sha256 != sha:
            raise ValueError(
                f"the memory model was trained on the latents of the VAE with SHA-256 {memory.vae_sha256}, but "
                f"{vae_path} has SHA-256 {sha}; use the VAE it was trained with"
            )
        memory = memory.model
    else:
        memory = load_memory(memory, vae_sha256=sha).model  # raises CheckpointError naming both hashes
    if memory.config.latent_dim != encoder.vae.config.latent_dim:
        raise ValueError(
            f"the memory model reads latents of size {memory.config.latent_dim}, but {vae_path} makes latents of "
            f"size {encoder.vae.config.latent_dim}; use the VAE it was trained with"
        )
    return memory.to(encoder.device).eval()


def _check_action_space(model: MDNRNN, action_space: gym.Space) -> None:
    cfg = model.config
    if isinstance(action_space, spaces.Discrete):
        fits = cfg.discrete_actions and int(action_space.n) == cfg.action_dim
    else:
        fits = isinstance(action_space, spaces.Box) and not cfg.discrete_actions
        fits = fits and int(np.prod(action_space.shape)) == cfg.action_dim
    if fits:
        return
    made_for = f"{cfg.action_dim} {'discrete actions' if cfg.discrete_actions else 'action values'}"
    raise ValueError(
        f"the memory model was trained for {made_for}, but the env's action space is {action_space}; "
        "train a memory model on data collected from this env"
    )


class MemoryState:
    """Observation buffers ``(num_envs, z + H [+ H])`` float32 and the memory model's ``(h, c)`` per env."""

    def __init__(self, model: MDNRNN, num_envs: int, action_space: gym.Space, include_cell: bool = False) -> None:
        _check_action_space(model, action_space)
        self.model = model
        self.num_envs = num_envs
        self.include_cell = include_cell
        device = next(model.parameters()).device
        hidden = model.config.hidden
        self._h = torch.zeros(1, num_envs, hidden, device=device)  # (1, N, H)
        self._c = torch.zeros(1, num_envs, hidden, device=device)  # (1, N, H)
        self._z = np.zeros((num_envs, model.config.latent_dim), np.float32)  # z_t of each env
        self._dim = model.config.latent_dim + hidden * (2 if include_cell else 1)

    @property
    def observation_space(self) -> spaces.Box:
        """``Box(-inf, inf, (z + H,), float32)`` for one env (``z + 2H`` with the cell state)."""
        return spaces.Box(-np.inf, np.inf, (self._dim,), dtype=np.float32)

    def _observations(self) -> np.ndarray:
        parts = [self._z, self._h[0].cpu().numpy()]
        if self.include_cell:
            parts.append(self._c[0].cpu().numpy())
        return np.concatenate(parts, 1).astype(np.float32)

    def reset(self, latents: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Start new episodes in the rows of ``mask`` (all when None): zero state, latent from ``latents``.

        Returns all observations.
        """
        rows = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, dtype=bool)
        self._z[rows] = latents[rows]
        keep = torch.as_tensor(~rows, dtype=torch.float32, device=self._h.device).view(1, -1, 1)
        self._h, self._c = self._h * keep, self._c * keep
        return self._observations()

    @torch.inference_mode()
    def push(self, latents: np.ndarray, actions: Any) -> np.ndarray:
        """Advance every env's state with its last latent and the action taken; then record the new latents.

        Returns all observations ``[z_{t+1}, h_{t+1}]``.
        """
        model = self.model
        actions = np.asarray(actions)
        if model.config.discrete_actions:
            acts = model.action_input(torch.as_tensor(actions.reshape(self.num_envs).astype(np.int64)))  # (N, a)
        else:
            acts = model.action_input(torch.as_tensor(actions.reshape(self.num_envs, -1), dtype=torch.float32))
        z = torch.as_tensor(self._z, device=self._h.device)  # (N, z)
        out = model(z.unsqueeze(1), acts.to(self._h.device).unsqueeze(1), (self._h, self._c))
        self._h, self._c = out.state  # (1, N, H) each
        self._z = np.array(latents, np.float32)
        return self._observations()
