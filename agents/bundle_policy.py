"""A trained agent as a collection policy: ``worldmodel collect ENV_ID --policy RUN_DIR``.

:class:`BundlePolicyFactory` is the picklable ``(action_space) -> policy`` the collector
(:mod:`envs.collect`) sends to its worker processes; each worker loads the bundle
(:func:`agents.bundle.load_bundle`, on the CPU) and gets a :class:`BundlePolicy`, which
turns the raw frames of one env into exactly the observations the agent was trained on:
the VAE's frame spec, its :class:`~worldmodel.vae.encoder.LatentEncoder`, the latent
history and previous action (:class:`~envs.latent.history.LatentHistory`) or the memory
model's state (:class:`~envs.memory.state.MemoryState`) and the frozen
``VecNormalize`` statistics. Exploration on top: ``epsilon`` (a uniform-random action
with that probability) and ``noise`` (Gaussian, in action units, for ``Box`` actions;
clipped to the bounds). Each episode's draws are seeded by ``reset(seed)``.

Only latent bundles are supported (a ``--pixels`` run is refused with a clear error).
:func:`collect_policy` is registered (``pyproject.toml``, group ``worldmodel.policies``) as the
provider ``worldmodel collect --policy RUN_DIR`` asks, since ``envs`` never imports ``agents``.

>>> factory = BundlePolicyFactory("runs/agents/my-run", epsilon=0.1)
>>> import pickle
>>> pickle.loads(pickle.dumps(factory)).epsilon
0.1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from agents.bundle import Bundle, BundleError, check_bundle, load_bundle
from agents.vec_env import StackConfig, find_vec_normalize, find_vec_wrapper
from envs.collect import CollectConfig, with_env_settings
from envs.config import EnvConfig
from envs.latent.encoded_observations import FrameLatents
from envs.latent.history import LatentHistory
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.memory.state import MemoryState


class BundlePolicy:
    """``(raw frame, info) -> action`` of a loaded latent bundle, for one env; ``reset(seed)`` per episode."""

    def __init__(
        self,
        bundle: Bundle,
        action_space: gym.Space,
        *,
        deterministic: bool = True,
        noise: float = 0.0,
        epsilon: float = 0.0,
    ) -> None:
        if bundle.stack.pixels:
            raise BundleError(
                f"{bundle.run_dir} is a --pixels run; collecting with a pixel agent is not supported. "
                "Collect with an agent trained on latents"
            )
        if action_space != bundle.venv.action_space:
            raise BundleError(
                f"the agent in {bundle.run_dir} acts in {bundle.venv.action_space}, but the env offers {action_space}; "
                f"collect from the env it was trained on ({bundle.stack.env_id}, env_kwargs {bundle.stack.env_kwargs})"
            )
        if noise > 0 and not isinstance(action_space, spaces.Box):
            raise ValueError(f"policy noise needs Box actions, got {action_space}; use --epsilon for exploration")
        if noise < 0 or not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"need noise >= 0 and 0 <= epsilon <= 1, got {noise} and {epsilon}")
        wrapper = find_vec_wrapper(bundle.venv, VecLatentObservation)
        self.bundle = bundle
        self.action_space = action_space
        self.deterministic = deterministic
        self.noise = noise
        self.epsilon = epsilon
        self.encoder = wrapper.encoder
        self.generator = wrapper.generator
        self.frame_latents: FrameLatents | None = None  # built for the first frame's shape
        self.history: LatentHistory | MemoryState
        if bundle.stack.memory:  # [z, h]: the memory model's state of this one env
            self.history = MemoryState(wrapper.history.model, 1, action_space, wrapper.history.include_cell)
        else:
            self.history = LatentHistory(
                1,
                self.encoder.latent_dim,
                bundle.stack.latent_history,
                action_space if bundle.stack.include_action else None,
            )
        self.normalizer: VecNormalize | None = find_vec_normalize(bundle.venv)
        self.rng = np.random.default_rng(0)
        self._state: Any = None
        self._last_action: Any = None

    def reset(self, seed: int) -> None:
        """Start an episode: seed exploration, latent sampling and (stochastic mode) torch's generator."""
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(seed)
        self.generator.manual_seed(seed)
        if not self.deterministic:
            torch.manual_seed(seed)  # SB3 samples actions from torch's global generator
        self._state = None
        self._last_action = None

    def observation(self, frame: np.ndarray) -> np.ndarray:
        """The agent's observation ``(1, obs_dim)`` after this frame (updates the history)."""
        if self.frame_latents is None:
            self.frame_latents = FrameLatents(self.encoder, frame.shape, None, source=self.bundle.stack.env_id)
        latents = self.frame_latents(frame[None], self.generator)  # (1, d)
        if self._last_action is None:
            obs = self.history.reset(latents)
        else:
            obs = self.history.push(latents, [self._last_action])
        return obs if self.normalizer is None else self.normalizer.normalize_obs(obs)

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        obs = self.observation(observation)
        episode_start = np.array([self._last_action is None])
        actions, self._state = self.bundle.model.predict(
            obs, state=self._state, episode_start=episode_start, deterministic=self.deterministic
        )
        action = actions[0]
        if self.noise > 0:
            noisy = action + self.noise * self.rng.standard_normal(action.shape)
            action = np.clip(noisy, self.action_space.low, self.action_space.high).astype(self.action_space.dtype)
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            action = self.action_space.sample()
        self._last_action = action
        return action


@dataclass(frozen=True)
class BundlePolicyFactory:
    """Picklable factory of :class:`BundlePolicy`: loads ``run_dir`` on the CPU where it is called."""

    run_dir: str | Path
    """A ``worldmodel train-agent`` run directory (latent runs)."""
    deterministic: bool = True
    """Act with the policy's mode instead of sampling."""
    noise: float = 0.0
    """Std of Gaussian noise added to Box actions (clipped to the bounds)."""
    epsilon: float = 0.0
    """Probability of a uniform-random action instead of the agent's."""

    @property
    def env_settings(self) -> dict[str, Any]:
        """The env settings the agent was trained with, which ``worldmodel collect`` takes where it is not told."""
        trained = StackConfig.from_dict(check_bundle(self.run_dir)["stack"]).env_config()
        return {"env_kwargs": dict(trained.env_kwargs), "frame_skip": trained.frame_skip,
                "skip_start_frames": trained.skip_start_frames}  # fmt: skip

    def check_env(self, env_config: EnvConfig) -> None:
        """Refuse an env setting the agent was not trained on (other id, keywords or frame skip)."""
        trained = StackConfig.from_dict(check_bundle(self.run_dir)["stack"]).env_config()
        ours = (env_config.env_id, env_config.env_kwargs, env_config.frame_skip, env_config.skip_start_frames)
        theirs = (trained.env_id, trained.env_kwargs, trained.frame_skip, trained.skip_start_frames)
        if ours != theirs:
            raise BundleError(
                f"the agent in {self.run_dir} was trained on (env id, env_kwargs, frame skip, start frames) = "
                f"{theirs}, but collection uses {ours}; collect with the agent's settings (drop the options that "
                "differ: collection takes the agent's by default)"
            )

    def __call__(self, action_space: gym.Space) -> BundlePolicy:
        bundle = load_bundle(self.run_dir, n_envs=1, device="cpu")
        return BundlePolicy(
            bundle,
            action_space,
            deterministic=self.deterministic,
            noise=self.noise,
            epsilon=self.epsilon,
        )


def collect_policy(config: CollectConfig) -> BundlePolicyFactory | None:
    """The agent factory when ``config.policy`` is a run directory; None for a built-in policy name.

    The ``worldmodel.policies`` entry point of ``agents``, called by ``worldmodel collect``.
    """
    if not Path(config.policy).is_dir():
        if config.policy_noise or config.epsilon:
            raise ValueError("--policy-noise and --epsilon apply to a trained agent: pass --policy RUN_DIR")
        return None
    factory = BundlePolicyFactory(config.policy, noise=config.policy_noise, epsilon=config.epsilon)
    factory.check_env(with_env_settings(config, factory.env_settings).env_config)
    return factory
