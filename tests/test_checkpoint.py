import json
from pathlib import Path

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


def _flip_bytes_in_tensor_data(path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # safetensors: header length, JSON header, then tensor bytes
    at = start + (len(data) - start) * 3 // 4
    data[at : at + count] = bytes(b ^ 0xFF for b in data[at : at + count])
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_the_weights_are_refused_with_the_fix(tmp_path, tiny_config, capsys):
    from worldmodel.cli import main

    path = tmp_path / "vae.safetensors"
    save_vae(path, ConvVAE(tiny_config), FrameSpec(height=16, width=16), step=1)
    load_vae(path)  # intact: loads
    _flip_bytes_in_tensor_data(path)
    with pytest.raises(CheckpointError, match=r"do not match the checksum it was written with.*Re-copy it or retrain"):
        load_vae(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checksum" in err


def test_flipped_bytes_in_a_memory_checkpoint_are_refused(tmp_path):
    from worldmodel.memory.model import MDNRNN, MemoryConfig, load_memory, save_memory

    path = tmp_path / "memory.safetensors"
    save_memory(path, MDNRNN(MemoryConfig(latent_dim=4, action_dim=2, hidden=8)), vae_sha256="ab" * 32, step=0)
    _flip_bytes_in_tensor_data(path)
    with pytest.raises(CheckpointError, match="checksum"):
        load_memory(path, vae_sha256="ab" * 32)


def test_file_format_names_never_change():
    """Every checkpoint, dataset and latent file on disk carries these names; renaming one orphans them all."""
    from worldmodel.data.format import FORMAT_NAME as DATASET_FORMAT
    from worldmodel.memory.model import MEMORY_FORMAT
    from worldmodel.memory.sequences import FORMAT_NAME as LATENTS_FORMAT
    from worldmodel.vae.checkpoint import VAE_FORMAT

    assert (VAE_FORMAT.name, MEMORY_FORMAT.name, DATASET_FORMAT, LATENTS_FORMAT) == (
        "worldmodel.vae",
        "worldmodel.memory",
        "worldmodel.dataset",
        "worldmodel.latents",
    )


def test_the_shipped_vae_and_memory_model_load():
    from worldmodel.memory.model import load_memory
    from worldmodel.vae.checkpoint import file_sha256

    shipped = Path(__file__).resolve().parents[1] / "experiments" / "pretrained" / "carracing"
    vae = load_vae(shipped / "vae.safetensors")
    assert vae.frame_spec.shape == (64, 64, 3) and vae.vae.config.latent_dim == 32
    memory = load_memory(shipped / "memory.safetensors", vae_sha256=file_sha256(shipped / "vae.safetensors"))
    assert memory.model.config.latent_dim == 32
