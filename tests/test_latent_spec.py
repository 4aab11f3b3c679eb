import dataclasses
import json
import pathlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv
from stable_baselines3.common.vec_env import DummyVecEnv

import envs
from envs.latent.gymnasium_env import LatentObservation
from envs.latent.gymnasium_vector import VectorLatentObservation
from envs.latent.sb3_vec_env import VecLatentObservation
from envs.latent.spec import ENCODER_DEFAULTS, LatentSpec
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.encoder import LatentEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_toy():
    return gym.make("worldmodel/DotTarget-v0", max_episode_steps=10)


def test_round_trip_through_a_json_friendly_dict(toy_vae_path):
    spec = LatentSpec(
        pathlib.Path(toy_vae_path),
        device="cpu",
        latent="sample",
        history=3,
        include_action=True,
        normalize=True,
        drop_inactive=True,
        precision="bf16",
        compile=True,
    )
    assert spec.vae == toy_vae_path  # a path is kept as a string
    fields = json.loads(json.dumps(spec.to_dict()))
    assert fields == {
        "vae": toy_vae_path,
        "device": "cpu",
        "latent": "sample",
        "history": 3,
        "include_action": True,
        "normalize": True,
        "drop_inactive": True,
        "precision": "bf16",
        "compile": True,
    }
    assert LatentSpec.from_dict(fields) == spec
    assert LatentSpec.from_dict({"vae": toy_vae_path}) == LatentSpec(toy_vae_path)  # the rest default


def test_is_frozen_and_reexported(toy_vae_path):
    spec = LatentSpec(toy_vae_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.history = 2
    assert envs.LatentSpec is LatentSpec


def test_encoder_defaults_are_the_encoders_own(toy_vae_path):
    spec = LatentSpec(toy_vae_path)
    assert {name: getattr(spec, name) for name in ENCODER_DEFAULTS} == ENCODER_DEFAULTS


def test_coerce_accepts_what_the_wrappers_take(toy_vae_path):
    spec = LatentSpec(toy_vae_path, history=2)
    assert LatentSpec.coerce(spec) is spec
    assert LatentSpec.coerce({"vae": toy_vae_path, "history": 2}) == spec
    assert LatentSpec.coerce(toy_vae_path) == LatentSpec.coerce(pathlib.Path(toy_vae_path)) == LatentSpec(toy_vae_path)
    encoder = LatentEncoder(toy_vae_path, device="cpu")
    assert LatentSpec.coerce(encoder).load_encoder() is encoder
    with pytest.raises(TypeError, match=r"expected a LatentSpec, a dict of its fields .* got int 3"):
        LatentSpec.coerce(3)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("latent", "median", r"LatentSpec.latent must be one of \('mean', 'sample'\), got 'median'"),
        ("precision", "fp64", r"LatentSpec.precision must be one of .*'fp32'.*got 'fp64'"),
        ("history", 0, r"LatentSpec.history must be a positive integer number of latents, got 0"),
        ("history", 2.0, r"history must be a positive integer .* got 2.0"),
        ("history", True, r"history must be a positive integer .* got True"),
        ("normalize", "false", r"LatentSpec.normalize must be true or false, got 'false'"),
        ("compile", 1, r"LatentSpec.compile must be true or false, got 1"),
        ("device", "gpu", r"LatentSpec.device must be 'auto' or a torch device .* got 'gpu'"),
        ("device", 0, r"LatentSpec.device must be a device string such as 'cpu', got 0"),
    ],
)
def test_bad_values_are_clear_errors(toy_vae_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        LatentSpec(toy_vae_path, **{field: value})
    with pytest.raises(ValueError, match=match):  # as rl-zoo's YAML would pass it
        LatentSpec.from_dict({"vae": toy_vae_path, field: value})


def test_bad_vae_and_dicts_are_clear_errors(toy_vae_path):
    with pytest.raises(TypeError, match=r"LatentSpec.vae must be a VAE checkpoint path.*got int 3"):
        LatentSpec(3)
    with pytest.raises(ValueError, match=r"unknown LatentSpec field\(s\) \['histroy'\]; the fields are \['vae', "):
        LatentSpec.from_dict({"vae": toy_vae_path, "histroy": 2})
    with pytest.raises(ValueError, match=r"needs 'vae' \(a VAE checkpoint path\), got only \['history'\]"):
        LatentSpec.from_dict({"history": 2})


def test_a_loaded_vae_has_no_dict_form_but_is_recorded_as_is(toy_vae_path):
    spec = LatentSpec(load_vae(toy_vae_path), device="cpu")
    with pytest.raises(TypeError, match=r"vae is a checkpoint path can be written as a dict, got a VAECheckpoint"):
        spec.to_dict()
    assert spec.recorded() is spec
    assert LatentSpec(toy_vae_path).recorded() == LatentSpec(toy_vae_path).to_dict()


def test_options_of_a_shared_encoder_cannot_change(toy_vae_path):
    encoder = LatentEncoder(toy_vae_path, device="cpu")
    assert LatentSpec(encoder, history=2, include_action=True).load_encoder() is encoder  # layout options are free
    with pytest.raises(ValueError, match=r"\{'normalize': True\} cannot change an existing LatentEncoder"):
        LatentSpec(encoder, normalize=True)


def test_the_three_wrappers_take_one_spec_its_dict_or_a_path(toy_vae_path):
    spec = LatentSpec(toy_vae_path, device="cpu", history=2, include_action=True)
    wrappers = {
        "gymnasium": lambda s: LatentObservation(make_toy(), s),
        "vector": lambda s: VectorLatentObservation(SyncVectorEnv([make_toy] * 2), s),
        "sb3": lambda s: VecLatentObservation(DummyVecEnv([make_toy] * 2), s),
    }
    for name, wrap in wrappers.items():
        from_spec, from_dict = wrap(spec), wrap(spec.to_dict())
        assert from_spec.encoded.spec == from_dict.encoded.spec == spec, name
        space = from_spec.single_observation_space if name == "vector" else from_spec.observation_space
        assert space == gym.spaces.Box(-np.inf, np.inf, (2 * 6 + 5,), np.float32), name
        assert wrap(toy_vae_path).encoded.spec == LatentSpec(toy_vae_path), name  # a path: all defaults
    recorded = LatentObservation(make_toy(), spec).spec.additional_wrappers[-1].kwargs
    assert recorded == {"spec": spec.to_dict()}  # gym.make(env.spec) rebuilds it from plain values
