"""Cost of the TQC preset's learning: SB3's gradient step with the eager and the compiled quantile Huber loss,
and the whole gradient step compiled (:mod:`agents.compiled_update`).

The CarRacing TQC preset (``agents/presets/tqc.yaml``: [64, 64] networks, 2 critics of 25
quantiles, batch 256, 10 gradient steps every 4 steps of its 2 envs) on a stub env with its
observation (two 32-dim latents) and action shapes, so that the figures are the algorithm's
own, not the env's or the encoder's. Two measures, one torch thread, each loss in interleaved
rounds (medians): milliseconds per gradient step (``model.train``), and agent steps per second
through ``model.learn`` (acting, the replay buffer and the gradient steps). The compiled loss is
:mod:`agents.quantile_loss`'s, the compiled update :func:`agents.compiled_update.compile_update`'s (a
second model from the same seed); both are built before timing starts.
"""

from __future__ import annotations

import importlib
import statistics
import time

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.compiled_update import compile_update
from agents.hyperparams import algo_kwargs_for_sb3, resolve_hyperparams
from agents.quantile_loss import QUANTILE_LOSS_USERS, set_quantile_loss, use_compiled_quantile_loss
from experiments.bench.latent_wrapper import table, with_threads
from experiments.pipeline.machine import describe_machine, write_section

ENV_ID = "CarRacing-v3"
OBS_DIM = 2 * 32  # latent history 2 of the shipped VAE's 32 latents
ROUNDS = 3
GRADIENT_STEPS = 100
LEARN_STEPS = 800
"""Agent steps per ``learn`` measurement: 100 rounds of 10 gradient steps with the preset's 2 envs."""


class StubLatentEnv(gym.Env):
    """Random latent-sized observations, never ending: costs next to nothing to step."""

    observation_space = gym.spaces.Box(-5.0, 5.0, (OBS_DIM,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def preset_model():
    """TQC with the CarRacing preset's keywords on stub envs, learning from the first step."""
    from sb3_contrib import TQC

    hp = resolve_hyperparams("tqc", ENV_ID)
    kwargs = {**algo_kwargs_for_sb3(hp.algo_kwargs), "learning_starts": 0}
    venv = DummyVecEnv([StubLatentEnv] * hp.n_envs)
    return TQC(hp.policy, venv, device="cpu", seed=0, **kwargs)


def _ms_per_gradient_step(model) -> float:
    start = time.perf_counter()
    model.train(gradient_steps=GRADIENT_STEPS, batch_size=model.batch_size)
    return (time.perf_counter() - start) / GRADIENT_STEPS * 1e3


def _learn_steps_per_s(model) -> float:
    start = time.perf_counter()
    model.learn(LEARN_STEPS, reset_num_timesteps=False)
    return LEARN_STEPS / (time.perf_counter() - start)


def run() -> str:
    start = time.perf_counter()
    machine = describe_machine()
    from sb3_contrib.common.utils import quantile_huber_loss as eager

    if not use_compiled_quantile_loss():
        return write_section("tqc", "## tqc\n\ntorch.compile could not build the loss on this machine.\n")
    compiled = importlib.import_module(QUANTILE_LOSS_USERS["tqc"]).quantile_huber_loss
    sb3_model, update_model = preset_model(), preset_model()
    if not compile_update(update_model):
        return write_section("tqc", "## tqc\n\ntorch.compile could not build the update on this machine.\n")
    arms = {  # name: (model, the loss SB3's update calls)
        "SB3, eager loss": (sb3_model, eager),
        "SB3, compiled loss": (sb3_model, compiled),
        "compiled update": (update_model, compiled),
    }
    for model in (sb3_model, update_model):
        model.learn(LEARN_STEPS)  # fills the buffer and builds the compiled graphs (warm-up)
    step_ms: dict[str, list[float]] = {name: [] for name in arms}
    learn_rate: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(ROUNDS):
        for name, (model, loss) in arms.items():
            set_quantile_loss(loss)
            step_ms[name].append(with_threads(1, lambda m=model: _ms_per_gradient_step(m)))
            learn_rate[name].append(with_threads(1, lambda m=model: _learn_steps_per_s(m)))
    set_quantile_loss(compiled)
    base = "SB3, eager loss"
    ms = {name: statistics.median(values) for name, values in step_ms.items()}
    rate = {name: statistics.median(values) for name, values in learn_rate.items()}
    spread = {
        name: (min(step_ms[name]), max(step_ms[name]), min(learn_rate[name]), max(learn_rate[name])) for name in arms
    }
    rows = [
        f"| {name} | {ms[name]:.2f} ({spread[name][0]:.2f}-{spread[name][1]:.2f}) | {ms[base] / ms[name]:.2f}x | "
        f"{rate[name]:,.0f} ({spread[name][2]:,.0f}-{spread[name][3]:,.0f}) | {rate[name] / rate[base]:.2f}x |"
        for name in arms
    ]
    header = ["gradient step", "ms per gradient step (range)", "speed-up", "agent steps/s in learn (range)", "speed-up"]
    section = "\n".join(
        [
            "## tqc",
            "",
            "The CarRacing TQC preset's learning: SB3's gradient step with the eager and the compiled quantile "
            "Huber loss (`agents.quantile_loss`), and the whole step compiled (`agents.compiled_update`), on stub "
            f"envs of its shapes ({OBS_DIM} inputs, 3 actions), one torch "
            f"thread: {GRADIENT_STEPS} gradient steps at batch {sb3_model.batch_size}, and {LEARN_STEPS:,} agent "
            f"steps of `learn` (10 gradient steps every 4 steps of 2 envs). Medians (and ranges) of {ROUNDS} "
            "interleaved rounds.",
            "",
            f"Machine: {machine}.",
            "",
            *table(header, rows),
            "",
            f"Benchmark wall time: {time.perf_counter() - start:.0f} s.",
            "",
        ]
    )
    return write_section("tqc", section)


if __name__ == "__main__":
    print(run())
