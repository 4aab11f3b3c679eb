"""Pickle-free policy files: every algorithm train-agent knows round-trips to identical actions (gSDE and
recurrent policies included), sampling matches SB3's load, and a file naming anything outside the allow-lists
is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from agents.algorithms import ALGORITHMS, get_algorithm
from agents.bundle import load_model
from agents.policy_file import (
    PolicyFileError,
    check_storable,
    load_policy,
    save_policy,
    space_from_json,
    space_to_json,
)
from agents.train import AgentConfig, resolve
from agents.vec_env import build_vec_env

SDE = {"ppo", "a2c", "trpo", "recurrentppo", "sac", "tqc"}
CASES = [(name, False) for name in sorted(ALGORITHMS)] + [(name, True) for name in sorted(SDE)]
"""(algorithm, gSDE): every algorithm, and those with gSDE once more with it (and continuous actions)."""


@pytest.fixture(scope="module")
def toy_venvs(toy_vae_path):
    """The toy env's latent stacks (z of the toy VAE, history 2), discrete and continuous actions."""
    venvs = {}
    for kind, env_id in (("discrete", "worldmodel/DotTarget-v0"), ("continuous", "worldmodel/DotTargetContinuous-v0")):
        _, _, stack = resolve(AgentConfig(env_id, vae=toy_vae_path, latent_history=2, device="cpu"))
        venvs[kind] = build_vec_env(stack, n_envs=1, seed=0, vae=toy_vae_path, device="cpu")
    yield venvs
    for venv in venvs.values():
        venv.close()


def make_model(name: str, sde: bool, venv, seed: int = 3):
    """An untrained model of ``name`` whose weights are moved off their seeded initialisation (so a rebuilt
    policy that silently kept its own initial weights would act differently)."""
    spec = get_algorithm(name)
    if spec.contrib:
        pytest.importorskip("sb3_contrib")
    kwargs = {"use_sde": True} if sde else {}
    if spec.off_policy:
        kwargs["buffer_size"] = 64
    policy = "MlpLstmPolicy" if spec.recurrent else "MlpPolicy"
    model = spec.load_class()(policy, venv, device="cpu", seed=seed, **kwargs)
    with torch.no_grad():
        for param in model.policy.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


def observations(venv, n: int = 24) -> np.ndarray:
    """Observations the stack gives along random actions, and wide random ones."""
    venv.action_space.seed(0)
    obs, seen = venv.reset(), []
    for _ in range(n // 2):
        seen.append(obs[0])
        obs, *_ = venv.step(np.array([venv.action_space.sample()]))
    wide = np.random.default_rng(0).normal(0, 3, (n - n // 2, obs.shape[1]))
    return np.concatenate([np.stack(seen), wide]).astype(np.float32)


@pytest.mark.parametrize(("name", "sde"), CASES, ids=[f"{n}{'-gsde' if s else ''}" for n, s in CASES])
def test_rebuilt_policy_acts_exactly_like_the_trained_model(tmp_path, toy_venvs, one_torch_thread, name, sde):
    spec = get_algorithm(name)
    discrete = spaces.Discrete in spec.action_spaces and not sde
    venv = toy_venvs["discrete" if discrete else "continuous"]
    model = make_model(name, sde, venv)
    save_policy(model, tmp_path / "policy.json", tmp_path / "policy.safetensors")
    loaded = load_policy(tmp_path / "policy.json", tmp_path / "policy.safetensors", "cpu")
    assert type(loaded.policy) is type(model.policy) and loaded.action_space == venv.action_space
    assert loaded.use_sde == sde and loaded.num_timesteps == 0
    obs = observations(venv)
    if not spec.recurrent:
        expected = model.predict(obs, deterministic=True)[0]
        np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
        return
    ours = theirs = None
    for step in range(4):  # the LSTM state carries over steps and is reset where an episode starts
        starts = np.arange(len(obs)) % 3 == step % 3
        expected, theirs = model.predict(obs, state=theirs, episode_start=starts, deterministic=True)
        actions, ours = loaded.predict(obs, state=ours, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(actions, expected)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(("name", "sde"), [("ppo", True), ("sac", True), ("dqn", False)])
def test_sampled_actions_match_sb3s_load(tmp_path, toy_venvs, one_torch_thread, name, sde):
    """Loading seeds the generators with the training seed and draws gSDE noise as SB3's load does, and DQN's
    sampled actions are epsilon-greedy with the saved rate: stochastic evaluations are unchanged."""
    venv = toy_venvs["discrete" if name == "dqn" else "continuous"]
    model = make_model(name, sde, venv)
    if name == "dqn":
        model.exploration_rate = 0.5
    model.save(tmp_path / "model.zip")
    save_policy(model, tmp_path / "policy.json", tmp_path / "policy.safetensors")
    obs = observations(venv)
    old = load_model(tmp_path / "model.zip", get_algorithm(name), {}, venv, "cpu")
    expected = [old.predict(obs, deterministic=False)[0] for _ in range(3)]
    new = load_policy(tmp_path / "policy.json", tmp_path / "policy.safetensors", "cpu")
    for want in expected:
        np.testing.assert_array_equal(new.predict(obs, deterministic=False)[0], want)


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(np.array([-1, 0, -np.inf], np.float32), np.array([1, 1, np.inf], np.float32), dtype=np.float32),
        spaces.Box(0, 255, (4, 4, 3), dtype=np.uint8),
        spaces.Discrete(5, start=-2),
        spaces.MultiDiscrete([3, 4], start=[1, 0]),
        spaces.MultiBinary(4),
        spaces.MultiBinary([2, 3]),
        spaces.Dict({"z": spaces.Box(-np.inf, np.inf, (6,)), "action": spaces.Discrete(5)}),
    ],
    ids=lambda space: type(space).__name__,
)
def test_spaces_round_trip_through_strict_json(space):
    text = json.dumps(space_to_json(space), allow_nan=False)
    back = space_from_json(json.loads(text))
    assert back == space and back.dtype == space.dtype


def test_space_json_refuses_unknown_types_and_dtypes():
    with pytest.raises(PolicyFileError, match="unknown space type 'Tuple'"):
        space_from_json({"type": "Tuple", "spaces": []})
    with pytest.raises(PolicyFileError, match="dtype 'object' is not one of"):
        space_from_json({"type": "Box", "shape": [1], "dtype": "object", "low": 0, "high": 1})


@pytest.fixture
def ppo_policy_file(tmp_path, toy_venvs):
    model = make_model("ppo", False, toy_venvs["discrete"])
    save_policy(model, tmp_path / "policy.json", tmp_path / "policy.safetensors")
    return tmp_path / "policy.json", tmp_path / "policy.safetensors"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"policy": "builtins.eval"}, "names the policy 'builtins.eval', which is not one of PPO's policies"),
        ({"policy_class": "os.system"}, "says MlpPolicy is 'os.system'"),
        ({"algorithm": "os"}, "unknown algorithm 'os'"),
        ({"policy_kwargs": {"activation_fn": "os.system"}}, "names activation_fn 'os.system', which is not one of"),
        ({"policy_kwargs": {"features_extractor_class": "subprocess.Popen"}}, "features_extractor_class 'subprocess"),
        ({"policy_kwargs": {"net_arch": "not a list"}}, "cannot rebuild the policy"),
        ({"format_version": 99}, "format version 99"),
    ],
)
def test_a_policy_file_outside_the_allow_lists_is_refused_in_one_line(ppo_policy_file, edit, message):
    json_path, weights = ppo_policy_file
    record = json.loads(json_path.read_text())
    for key, value in edit.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    json_path.write_text(json.dumps(record))
    with pytest.raises(PolicyFileError, match=message) as info:
        load_policy(json_path, weights, "cpu")
    assert "\n" not in str(info.value)


def test_weights_of_another_save_are_refused(ppo_policy_file, tmp_path, toy_venvs):
    json_path, weights = ppo_policy_file
    other = make_model("ppo", False, toy_venvs["discrete"], seed=4)
    save_policy(other, tmp_path / "other.json", weights)
    with pytest.raises(PolicyFileError, match=r"not the weights file .* was written with"):
        load_policy(json_path, weights, "cpu")


def test_a_policy_that_cannot_be_stored_is_refused_when_training_starts(toy_venvs):
    spec = get_algorithm("ppo")
    model = spec.load_class()("MlpPolicy", toy_venvs["discrete"], policy_kwargs={"activation_fn": nn.Hardswish})
    with pytest.raises(ValueError, match=r"activation_fn=.*Hardswish.* is not one of ReLU, Tanh"):
        check_storable(model)
