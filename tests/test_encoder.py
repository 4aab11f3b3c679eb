import dataclasses

import numpy as np
import pytest
import torch

from worldmodel.frames import FrameSpec, frames_to_tensor, tensor_to_frames
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.encoder import LatentEncoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_batched_encoding_matches_one_frame_at_a_time(toy_vae_path):
    encoder = LatentEncoder(toy_vae_path, device="cpu")
    frames = random_frames(9)
    z = encoder.encode(frames)
    assert z.shape == (9, 6) and z.dtype == np.float32
    single = np.concatenate([encoder.encode(f[None]) for f in frames])
    np.testing.assert_allclose(z, single, atol=1e-5)
    assert np.abs(z[0] - z[1]).max() > 1e-2
    assert encoder.encode(frames[:0]).shape == (0, 6)


def test_mean_is_mu_of_the_vae(toy_vae_path):
    checkpoint = load_vae(toy_vae_path)
    frames = random_frames(4)
    with torch.no_grad():
        mu, _ = checkpoint.vae.encode(frames_to_tensor(frames, checkpoint.frame_spec))
    # fp32 both ways; the encoder's channels-last copy runs other conv kernels (summation order: ~1e-6 apart on AVX2)
    np.testing.assert_allclose(LatentEncoder(checkpoint, device="cpu").encode(frames), mu.numpy(), atol=1e-5)


def test_sample_is_reproducible_with_a_seeded_generator(toy_vae_path):
    encoder = LatentEncoder(toy_vae_path, device="cpu", latent="sample")
    frames = random_frames(4)
    a = encoder.encode(frames, encoder.make_generator(3))
    np.testing.assert_array_equal(a, encoder.encode(frames, encoder.make_generator(3)))
    assert not np.allclose(a, encoder.encode(frames, encoder.make_generator(4)))
    assert not np.allclose(a, LatentEncoder(toy_vae_path, device="cpu").encode(frames))


def test_normalize_and_drop_inactive(toy_vae_path):
    stats = load_vae(toy_vae_path).latent_stats
    frames = random_frames(5)
    raw = LatentEncoder(toy_vae_path, device="cpu").encode(frames)
    normalized = LatentEncoder(toy_vae_path, device="cpu", normalize=True).encode(frames)
    np.testing.assert_allclose(normalized, (raw - stats.mean) / stats.std, rtol=1e-5, atol=1e-6)
    dropped = LatentEncoder(toy_vae_path, device="cpu", drop_inactive=True)
    assert dropped.latent_dim == int(stats.active.sum()) == 4
    np.testing.assert_array_equal(dropped.encode(frames), raw[:, stats.active])


def test_normalize_without_stats_is_a_clear_error(toy_vae_path):
    checkpoint = dataclasses.replace(load_vae(toy_vae_path), latent_stats=None)
    with pytest.raises(ValueError, match=r"need latent statistics.*normalize=False"):
        LatentEncoder(checkpoint, device="cpu", normalize=True)


def test_frame_spec_not_matching_the_vae_is_a_clear_error(toy_vae_path):
    checkpoint = dataclasses.replace(load_vae(toy_vae_path), frame_spec=FrameSpec(height=64, width=64))
    with pytest.raises(ValueError, match=r"frames of shape \(64, 64, 3\) but its VAE expects \(32, 32, 3\)"):
        LatentEncoder(checkpoint, device="cpu")


def test_bad_frames_are_clear_errors(toy_vae_path):
    encoder = LatentEncoder(toy_vae_path, device="cpu")
    with pytest.raises(ValueError, match="expected uint8 frames, got dtype float32"):
        encoder.encode(random_frames(2).astype(np.float32))
    with pytest.raises(ValueError, match=r"expected frames of shape \(N, 32, 32, 3\)"):
        encoder.encode(np.zeros((2, 64, 64, 3), dtype=np.uint8))


def test_bad_options_are_clear_errors(toy_vae_path):
    with pytest.raises(ValueError, match="latent must be one of"):
        LatentEncoder(toy_vae_path, device="cpu", latent="mode")
    with pytest.raises(ValueError, match="precision must be one of"):
        LatentEncoder(toy_vae_path, device="cpu", precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            LatentEncoder(toy_vae_path, device="cuda")


def test_reconstruct_decodes_the_mean(toy_vae_path):
    checkpoint = load_vae(toy_vae_path)
    encoder = LatentEncoder(checkpoint, device="cpu")
    frames = random_frames(3)
    out = encoder.reconstruct(frames)
    assert out.shape == frames.shape and out.dtype == np.uint8
    with torch.no_grad():
        mu, _ = checkpoint.vae.encode(frames_to_tensor(frames, checkpoint.frame_spec))
        expected = tensor_to_frames(checkpoint.vae.decode(mu))
    np.testing.assert_array_equal(out, expected)


def test_bf16_is_close_to_fp32(toy_vae_path):
    frames = random_frames(4)
    fp32 = LatentEncoder(toy_vae_path, device="cpu").encode(frames)
    bf16 = LatentEncoder(toy_vae_path, device="cpu", precision="bf16").encode(frames)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max())


@pytest.mark.slow
def test_compiled_matches_eager(toy_vae_path):
    frames = random_frames(4)
    eager = LatentEncoder(toy_vae_path, device="cpu").encode(frames)
    np.testing.assert_allclose(LatentEncoder(toy_vae_path, device="cpu", compile=True).encode(frames), eager, atol=1e-4)


@pytest.mark.gpu
def test_cuda_encoding_matches_cpu(toy_vae_path):
    checkpoint = load_vae(toy_vae_path)
    frames = random_frames(64)
    cuda = LatentEncoder(checkpoint, device="cuda")
    assert cuda.device.type == "cuda" and next(checkpoint.vae.parameters()).device.type == "cpu"  # caller's model kept
    # cuDNN convolutions run in TF32 by default (10-bit mantissa): ~1e-3 relative error against the CPU's fp32
    np.testing.assert_allclose(cuda.encode(frames), LatentEncoder(checkpoint, device="cpu").encode(frames), atol=1e-2)
    sampler = LatentEncoder(checkpoint, device="cuda", latent="sample")
    a = sampler.encode(frames, sampler.make_generator(0))
    np.testing.assert_array_equal(a, sampler.encode(frames, sampler.make_generator(0)))
    bf16 = LatentEncoder(checkpoint, device="cuda", precision="bf16").encode(frames)
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
