import json

import numpy as np
import pytest
import torch

from worldmodel.cli import main
from worldmodel.data import DatasetWriter, FrameDataset
from worldmodel.frames import FrameSpec, frames_to_tensor
from worldmodel.memory.sequences import LatentSequences, LatentsError, encode_dataset
from worldmodel.vae.checkpoint import file_sha256, save_vae
from worldmodel.vae.encoder import LatentEncoder
from worldmodel.vae.model import ConvVAE

SPEC = FrameSpec(height=16, width=16)


def _add_episodes(data_dir, first: int, count: int, shard_mib: float = 0.001) -> None:
    """``count`` random 16x16 episodes of 4..7 steps with discrete actions, one shard each by default."""
    with DatasetWriter(data_dir, env_id="Demo-v0", frame_spec=SPEC, collector_id="c", shard_mib=shard_mib) as writer:
        for i in range(first, first + count):
            rng = np.random.default_rng(i)
            steps = 4 + i % 4
            ends = np.zeros(steps, bool)
            ends[-1] = True
            writer.add_episode(rng.integers(0, 256, (steps + 1, 16, 16, 3), dtype=np.uint8),
                               rng.integers(0, 5, steps), rng.normal(size=steps), ends, ~ends, seed=i,
                               episode_index=i)  # fmt: skip


@pytest.fixture
def setup(tmp_path, tiny_config):
    _add_episodes(tmp_path / "data", 0, 3)
    vae = ConvVAE(tiny_config).eval()
    save_vae(tmp_path / "vae.safetensors", vae, SPEC)
    return tmp_path, vae


@pytest.mark.parametrize("one_shard", [False, True])
def test_encode_stores_each_episodes_posteriors_and_steps(setup, one_shard):
    tmp, vae = setup
    if one_shard:  # all episodes in one shard
        _add_episodes(tmp / "one", 0, 3, shard_mib=1.0)
    data = tmp / ("one" if one_shard else "data")
    latents = encode_dataset(data, tmp / "vae.safetensors", tmp / "latents", device="cpu")
    ds = FrameDataset.open(data)
    assert len(ds.manifest["shards"]) == (1 if one_shard else 3)
    assert latents.num_episodes == 3 and latents.latent_dim == 4
    assert latents.vae_sha256 == file_sha256(tmp / "vae.safetensors") and latents.dataset_id == ds.dataset_id
    for e in range(3):
        stored, source = latents.episode(e), ds.episode(e)
        with torch.no_grad():
            mu, logvar = vae.encode(frames_to_tensor(np.array(source.frames), SPEC, "cpu"))
        np.testing.assert_allclose(stored.mu, mu.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(stored.logvar, logvar.numpy(), rtol=0, atol=1e-5)
        assert isinstance(stored.mu, np.memmap) and stored.mu.dtype == np.float32
        for key in ("actions", "rewards", "terminated", "truncated"):
            assert np.array_equal(getattr(stored, key), getattr(source, key)), key
    assert latents.lengths.tolist() == [len(ds.episode(e).rewards) for e in range(3)]


def test_encode_resumes_after_a_crash_and_encodes_only_new_shards(setup, monkeypatch):
    tmp, _ = setup
    calls = []
    original = LatentEncoder.posterior

    def crash_on_second_shard(self, frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, frames)

    monkeypatch.setattr(LatentEncoder, "posterior", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(tmp / "data", tmp / "vae.safetensors", tmp / "latents", device="cpu")
    with pytest.raises(LatentsError, match="only partly encoded"):
        LatentSequences.open(tmp / "latents")
    resumed = encode_dataset(tmp / "data", tmp / "vae.safetensors", tmp / "latents", device="cpu")
    assert len(calls) == 2 + 2  # the crashed shard again and the third; not the first
    _add_episodes(tmp / "data", 3, 1)
    grown = encode_dataset(tmp / "data", tmp / "vae.safetensors", tmp / "latents", device="cpu")
    assert len(calls) == 5 and grown.num_episodes == 4
    fresh = encode_dataset(tmp / "data", tmp / "vae.safetensors", tmp / "fresh", device="cpu")
    for e in range(4):
        assert np.array_equal(grown.episode(e).mu, fresh.episode(e).mu)
    assert resumed.num_episodes == 3 and not list((tmp / "latents").glob(".*"))


def test_another_vae_is_refused_naming_both_hashes(setup, tiny_config):
    tmp, _ = setup
    encode_dataset(tmp / "data", tmp / "vae.safetensors", tmp / "latents", device="cpu")
    save_vae(tmp / "other.safetensors", ConvVAE(tiny_config), SPEC)
    ours, theirs = file_sha256(tmp / "vae.safetensors"), file_sha256(tmp / "other.safetensors")
    with pytest.raises(LatentsError, match=f"VAE with SHA-256 {ours}.*other.safetensors has SHA-256 {theirs}"):
        encode_dataset(tmp / "data", tmp / "other.safetensors", tmp / "latents", device="cpu")
    with pytest.raises(LatentsError, match=f"SHA-256 {ours}.*SHA-256 {theirs}"):
        LatentSequences.open(tmp / "latents", vae_sha256=theirs)
    with pytest.raises(LatentsError, match="worldmodel encode DATA"):
        LatentSequences.open(tmp / "nothing")


def test_encode_command(setup, capsys):
    tmp, _ = setup
    argv = ["encode", str(tmp / "data"), "--vae", str(tmp / "vae.safetensors"), "--out", str(tmp / "latents")]
    assert main([*argv, "--device", "cpu", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 3
    assert main([*argv[:3], str(tmp / "missing.safetensors"), *argv[4:]]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err
