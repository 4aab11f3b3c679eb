"""SAC's and TQC's gradient step as compiled graphs: the same update as SB3's, faster on a CPU.

On latents the networks are small ([64, 64]) and the batch is 256, so a gradient step is a few
hundred tiny operations: Python, the autograd engine and one memory pass per elementwise
operation cost more than the arithmetic. :func:`compile_update` makes an algorithm's ``train``
run its three pieces through ``torch.compile`` (the policy's sample and log-probability, the
critic loss with its target, the actor loss), whose forward and backward graphs Inductor fuses;
Adam runs fused and the target networks move with one ``torch._foreach`` call per tensor list.
What it computes is SB3's update, step for step, up to float rounding (a test holds the two
side by side), so a run's recipe does not change; ``python -m experiments.bench --only update``
measures the speed.

>>> import gymnasium as gym
>>> from stable_baselines3 import SAC
>>> model = SAC("MlpPolicy", gym.make("Pendulum-v1"), learning_starts=0, buffer_size=500)
>>> compile_update(model, enabled=False)
False
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

MIN_GRADIENT_STEPS = 5_000
"""Fewer planned gradient steps than this train eagerly: compiling costs about as much time as a few thousand
eager steps of the CarRacing preset on 2 CPU cores."""


def _tqc_critic_loss(model: Any) -> Callable[..., torch.Tensor]:
    """TQC's critic loss: truncated target quantiles of the next state against the current ones."""
    from sb3_contrib.common.utils import quantile_huber_loss

    critic = model.critic
    n_target = critic.quantiles_total - model.top_quantiles_to_drop_per_net * critic.n_critics

    def loss(obs, actions, next_obs, next_actions, next_log_prob, rewards, not_done, discounts, ent_coef):
        with torch.no_grad():
            next_quantiles = model.critic_target(next_obs, next_actions).reshape(obs.shape[0], -1)
            next_quantiles = torch.sort(next_quantiles).values[:, :n_target]
            target = next_quantiles - ent_coef * next_log_prob.reshape(-1, 1)
            target = (rewards + not_done * discounts * target).unsqueeze(1)
        return quantile_huber_loss(critic(obs, actions), target, sum_over_quantiles=False)

    return loss


def _sac_critic_loss(model: Any) -> Callable[..., torch.Tensor]:
    """SAC's critic loss: the clipped double-Q soft target against every critic's estimate."""

    def loss(obs, actions, next_obs, next_actions, next_log_prob, rewards, not_done, discounts, ent_coef):
        with torch.no_grad():
            next_q = torch.cat(model.critic_target(next_obs, next_actions), dim=1)
            next_q = torch.min(next_q, dim=1, keepdim=True).values - ent_coef * next_log_prob.reshape(-1, 1)
            target = rewards + not_done * discounts * next_q
        return 0.5 * sum(torch.nn.functional.mse_loss(q, target) for q in model.critic(obs, actions))

    return loss


def _actor_loss(model: Any, is_tqc: bool) -> Callable[..., torch.Tensor]:
    """The actor's loss: entropy-weighted log-probability minus the critics' value of its action."""

    def loss(obs, actions_pi, log_prob, ent_coef):
        if is_tqc:
            value = model.critic(obs, actions_pi).mean(dim=2).mean(dim=1, keepdim=True)
        else:
            value = torch.min(torch.cat(model.critic(obs, actions_pi), dim=1), dim=1, keepdim=True).values
        return (ent_coef * log_prob.reshape(-1, 1) - value).mean()

    return loss


def _fuse_adam(optimizer: torch.optim.Optimizer) -> None:
    """Make an Adam optimizer (SB3's default) step all its tensors in one fused kernel."""
    if isinstance(optimizer, torch.optim.Adam):
        for group in optimizer.param_groups:
            group.update(fused=True, foreach=False)


def _move_targets(params: list[torch.Tensor], targets: list[torch.Tensor], tau: float) -> None:
    """SB3's ``polyak_update`` (``target = (1 - tau) * target + tau * param``) as two foreach calls."""
    if targets:
        torch._foreach_mul_(targets, 1.0 - tau)
        torch._foreach_add_(targets, params, alpha=tau)


def _train(self: Any, gradient_steps: int, batch_size: int = 64) -> None:
    """SB3's SAC/TQC ``train`` with the compiled pieces of :func:`compile_update`."""
    graphs = self._compiled_update
    self.policy.set_training_mode(True)
    optimizers = [self.actor.optimizer, self.critic.optimizer]
    if self.ent_coef_optimizer is not None:
        optimizers.append(self.ent_coef_optimizer)
    self._update_learning_rate(optimizers)
    critic_params, target_params = list(self.critic.parameters()), list(self.critic_target.parameters())
    stats: dict[str, list[torch.Tensor]] = {"ent_coef": [], "actor_loss": [], "critic_loss": [], "ent_coef_loss": []}
    for gradient_step in range(gradient_steps):
        data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
        discounts = data.discounts if data.discounts is not None else self.gamma
        if self.use_sde:
            self.actor.reset_noise()
        actions_pi, log_prob = graphs["sample"](data.observations)
        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            ent_coef = torch.exp(self.log_ent_coef.detach())
            ent_coef_loss = -(self.log_ent_coef * (log_prob.reshape(-1, 1) + self.target_entropy).detach()).mean()
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
            stats["ent_coef_loss"].append(ent_coef_loss.detach())
        else:
            ent_coef = self.ent_coef_tensor
        stats["ent_coef"].append(ent_coef)
        with torch.no_grad():
            next_actions, next_log_prob = graphs["sample"](data.next_observations)
        critic_loss = graphs["critic_loss"](
            data.observations, data.actions, data.next_observations, next_actions, next_log_prob,
            data.rewards, 1.0 - data.dones, discounts, ent_coef,
        )  # fmt: skip
        self.critic.optimizer.zero_grad()
        critic_loss.backward()
        self.critic.optimizer.step()
        actor_loss = graphs["actor_loss"](data.observations, actions_pi, log_prob, ent_coef)
        self.actor.optimizer.zero_grad()
        actor_loss.backward()
        self.actor.optimizer.step()
        stats["critic_loss"].append(critic_loss.detach())
        stats["actor_loss"].append(actor_loss.detach())
        if gradient_step % self.target_update_interval == 0:
            with torch.no_grad():
                _move_targets(critic_params, target_params, self.tau)
                _move_targets(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
    self._n_updates += gradient_steps
    self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
    for name, values in stats.items():
        if values:
            self.logger.record(f"train/{name}", float(np.mean(torch.stack(values).cpu().numpy())))


def planned_gradient_steps(model: OffPolicyAlgorithm, agent_steps: int) -> int:
    """About how many gradient steps ``model.learn`` makes in ``agent_steps`` more steps (all envs together).

    >>> import gymnasium as gym
    >>> from stable_baselines3 import SAC
    >>> model = SAC("MlpPolicy", gym.make("Pendulum-v1"), train_freq=4, gradient_steps=10, learning_starts=0)
    >>> planned_gradient_steps(model, 1_000)
    2500
    """
    rollout = model.train_freq.frequency * model.n_envs  # transitions per rollout (a step unit, or ~1 episode)
    per_rollout = model.gradient_steps if model.gradient_steps >= 0 else rollout
    return agent_steps // rollout * per_rollout


def compile_update(model: OffPolicyAlgorithm, enabled: bool = True, backend: str = "inductor") -> bool:
    """Make ``model.train`` (SAC or TQC) run its gradient steps compiled; returns whether it does.

    ``enabled=False`` changes nothing and returns False, as does an algorithm other than SAC and
    TQC. Where Inductor cannot compile (it needs a C++ compiler on a CPU) a warning says why
    and SB3's own update stays. Compiling takes about 20 s on first use (less from Inductor's
    on-disk cache). The model saves and loads as before: only this process's ``train`` changes.
    ``backend="aot_eager"`` traces the same graphs, forward and backward, without generating code:
    no speed-up, but it checks the update in seconds.
    """
    from sb3_contrib import TQC

    if not enabled or not isinstance(model, (SAC, TQC)):
        return False
    is_tqc = isinstance(model, TQC)
    compiled = functools.partial(torch.compile, dynamic=False, backend=backend)  # one batch size throughout
    critic_loss = _tqc_critic_loss if is_tqc else _sac_critic_loss
    graphs = {
        "sample": compiled(model.actor.action_log_prob),
        "critic_loss": compiled(critic_loss(model)),
        "actor_loss": compiled(_actor_loss(model, is_tqc)),
    }
    try:
        _probe(model, graphs)
    except Exception as exc:  # any compiler failure leaves SB3's update in place
        warnings.warn(
            f"torch.compile could not build the {type(model).__name__} update ({type(exc).__name__}: {exc}); "
            "training keeps SB3's eager update. Inductor needs a C++ compiler (g++ or clang); pass "
            "--no-compile-update to skip the attempt",
            stacklevel=2,
        )
        return False
    for optimizer in (model.actor.optimizer, model.critic.optimizer, model.ent_coef_optimizer):
        if optimizer is not None:
            _fuse_adam(optimizer)
    model._compiled_update = graphs
    model.train = types.MethodType(_train, model)
    model._excluded_save_params = types.MethodType(_excluded_save_params, model)
    return True


_INSTANCE_ATTRIBUTES = ["_compiled_update", "train", "_excluded_save_params"]
"""What :func:`compile_update` sets on a model: this process's, never saved."""


def _excluded_save_params(self: Any) -> list[str]:
    """The class's list of what ``save`` leaves out, and :data:`_INSTANCE_ATTRIBUTES`."""
    return [*type(self)._excluded_save_params(self), *_INSTANCE_ATTRIBUTES]


def _probe(model: Any, graphs: dict[str, Callable[..., Any]]) -> None:
    """Compile every graph on a zero batch of the model's size (forward and backward), leaving the model as it was."""
    batch = model.batch_size
    obs = torch.zeros((batch, *model.observation_space.shape), device=model.device)
    actions = torch.zeros((batch, *model.action_space.shape), device=model.device)
    column = torch.zeros((batch, 1), device=model.device)
    ent = torch.ones((), device=model.device)
    if model.use_sde:
        model.actor.reset_noise()
    actions_pi, log_prob = graphs["sample"](obs)
    with torch.no_grad():
        next_actions, next_log_prob = graphs["sample"](obs)
    loss = graphs["critic_loss"](obs, actions, obs, next_actions, next_log_prob, column, column, model.gamma, ent)
    loss = loss + graphs["actor_loss"](obs, actions_pi, log_prob, ent)
    torch.autograd.grad(loss, [p for p in model.policy.parameters() if p.requires_grad], allow_unused=True)
