"""agents.compiled_update: SAC's and TQC's compiled gradient step equals SB3's, and saving ignores it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import TQC
from stable_baselines3 import PPO, SAC

from agents.compiled_update import compile_update


class NoisyLatents(gym.Env):
    """A 16-dim observation of noise, a reward that prefers large first actions, episodes of ~50 steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (16,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        return self.rng.standard_normal(16).astype(np.float32), {}

    def step(self, action):
        obs = self.rng.standard_normal(16).astype(np.float32)
        return obs, float(action[0]), bool(self.rng.random() < 0.02), False, {}


def _trained(algo, use_sde: bool):
    model = algo(
        "MlpPolicy", NoisyLatents(), batch_size=64, learning_starts=300, buffer_size=2000, tau=0.02, seed=0,
        use_sde=use_sde, policy_kwargs=dict(net_arch=[32, 32]),
    )  # fmt: skip
    model.learn(300)  # fills the replay buffer, no gradient step yet
    return model


@pytest.mark.parametrize(
    ("algo", "use_sde", "backend"),
    [
        (TQC, True, "aot_eager"),
        (SAC, False, "aot_eager"),
        pytest.param(TQC, True, "inductor", marks=pytest.mark.slow),  # minutes of C++ compilation on 2 cores
    ],
    ids=["tqc-gsde", "sac", "tqc-gsde-inductor"],
)
def test_the_compiled_update_moves_every_parameter_as_sb3s_does(algo, use_sde, backend):
    """The traced graphs (aot_eager: forward and backward as the compiler sees them) and Inductor's code."""
    eager, compiled = _trained(algo, use_sde), _trained(algo, use_sde)
    before = [p.detach().clone() for p in eager.policy.parameters()]
    assert compile_update(compiled, backend=backend) and not compile_update(eager, enabled=False)
    logged = []
    for model in (eager, compiled):
        torch.manual_seed(1)
        np.random.seed(1)  # the replay buffer samples with NumPy's global generator
        model.train(gradient_steps=15, batch_size=64)
        logged.append({k: v for k, v in model.logger.name_to_value.items() if k.startswith("train/")})
    moved = [(p - b).abs().max().item() for p, b in zip(eager.policy.parameters(), before, strict=True)]
    assert min(moved[:4]) > 1e-4  # the update changed the networks, so equal results mean equal updates
    for p, q in zip(eager.policy.parameters(), compiled.policy.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
    assert logged[1].keys() == logged[0].keys() and {"train/critic_loss", "train/actor_loss"} <= logged[0].keys()
    for key, value in logged[0].items():
        assert logged[1][key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert compiled.target_update_interval == 1 and compiled._n_updates == eager._n_updates


def test_a_compiled_model_saves_and_loads_as_sb3s(tmp_path):
    model = _trained(SAC, use_sde=False)
    assert compile_update(model, backend="aot_eager")
    model.save(tmp_path / "model.zip")  # the compiled graphs are this process's: they must not be pickled
    loaded = SAC.load(tmp_path / "model.zip")
    assert "train" not in vars(loaded) and "_compiled_update" not in vars(loaded)
    obs = np.zeros(16, np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_other_algorithms_keep_their_own_update():
    model = PPO("MlpPolicy", NoisyLatents(), n_steps=64, batch_size=32)
    assert not compile_update(model)
    assert "train" not in vars(model)
