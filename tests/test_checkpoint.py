import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from worldmodel.frames import FrameSpec
from worldmodel.vae.checkpoint import CheckpointError, LatentStats, load_vae, save_vae
from worldmodel.vae.model import ConvVAE


@pytest.fixture
def saved(tmp_path, tiny_config):
    vae = ConvVAE(tiny_config).eval()
    spec = FrameSpec(height=16, width=16, crop=(0, 0, 84, 96))
    path = tmp_path / "vae.safetensors"
    save_vae(path, vae, spec, step=123, dataset_id="abc")
    return path, vae, spec


def test_round_trip_bit_identical_encode(saved):
    path, vae, spec = saved
    ckpt = load_vae(path)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        mu_a, logvar_a = vae.encode(x)
        mu_b, logvar_b = ckpt.vae.encode(x)
    assert torch.equal(mu_a, mu_b) and torch.equal(logvar_a, logvar_b)
    assert ckpt.frame_spec == spec
    assert ckpt.vae.config == vae.config
    assert ckpt.metadata == {"step": 123, "dataset_id": "abc"}
    assert not ckpt.vae.training
    assert not list(path.parent.glob("*.tmp"))


def test_latent_stats_round_trip(tmp_path, tiny_config):
    stats = LatentStats(
        mean=np.arange(4, dtype=np.float32), std=np.ones(4, np.float32), active=np.array([1, 0, 1, 1], bool)
    )
    path = tmp_path / "vae.safetensors"
    save_vae(path, ConvVAE(tiny_config), FrameSpec(height=16, width=16), latent_stats=stats)
    loaded = load_vae(path).latent_stats
    assert np.array_equal(loaded.mean, stats.mean) and np.array_equal(loaded.active, stats.active)
    assert loaded.active.dtype == bool


def test_wrapped_and_channels_last_models_save_clean(tmp_path, tiny_config):
    vae = ConvVAE(tiny_config).to(memory_format=torch.channels_last)

    class Wrapper(torch.nn.Module):  # stands in for DDP's `module.` prefix
        def __init__(self, module):
            super().__init__()
            self.module = module

    path = tmp_path / "vae.safetensors"
    save_vae(path, Wrapper(vae), FrameSpec(height=16, width=16))
    ckpt = load_vae(path)
    torch.testing.assert_close(ckpt.vae.fc_mu.weight, vae.fc_mu.weight, rtol=0, atol=0)


def test_compiled_model_saves_without_prefix(tmp_path, tiny_config):
    from worldmodel.vae.checkpoint import clean_state_dict

    class Compiled(torch.nn.Module):  # the attribute name torch.compile uses
        def __init__(self, module):
            super().__init__()
            self._orig_mod = module

    keys = clean_state_dict(Compiled(ConvVAE(tiny_config))).keys()
    assert set(keys) == set(ConvVAE(tiny_config).state_dict().keys())


def test_spec_must_match_config(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="does not match the VAE input"):
        save_vae(tmp_path / "v.safetensors", ConvVAE(tiny_config), FrameSpec(height=64, width=64))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vae(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{path.name}.*truncated or corrupt"):
        load_vae(path)


def test_not_safetensors(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("hello, I am not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_vae(path)


def test_safetensors_but_not_a_vae(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a worldmodel VAE checkpoint"):
        load_vae(path)


def _rewrite_header(path, **changes):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    header.update(changes)
    save_file(tensors, str(path), metadata=header)


def test_unknown_format_version(saved):
    path = saved[0]
    _rewrite_header(path, format_version="99")
    with pytest.raises(CheckpointError, match="format version '99'"):
        load_vae(path)


def test_weights_not_matching_config(saved):
    path = saved[0]
    config = json.loads(__import__("safetensors").safe_open(str(path), "pt").metadata()["vae_config"])
    config["latent_dim"] = 7
    _rewrite_header(path, vae_config=json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_vae(path)


def test_read_frame_spec_from_header_only(saved):
    from worldmodel.vae.checkpoint import read_frame_spec

    path, _, spec = saved
    assert read_frame_spec(path) == spec
