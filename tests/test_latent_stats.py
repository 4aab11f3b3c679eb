import numpy as np
import pytest
import torch

from worldmodel.training.distributed import init_distributed
from worldmodel.vae.latent_stats import ACTIVE_THRESHOLD, LatentMoments, accumulate_latents
from worldmodel.vae.model import ConvVAE, kl_divergence


def test_moments_match_numpy_over_batches():
    rng = np.random.default_rng(0)
    mu = rng.normal(2.0, 3.0, (50, 3)).astype(np.float32)
    logvar = rng.normal(-1.0, 0.5, (50, 3)).astype(np.float32)
    moments = LatentMoments(3)
    for lo in range(0, 50, 16):
        moments.update(torch.from_numpy(mu[lo : lo + 16]), torch.from_numpy(logvar[lo : lo + 16]))
    stats = moments.to_stats()
    np.testing.assert_allclose(stats.mean, mu.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, mu.std(0), rtol=1e-5)
    kl = kl_divergence(torch.from_numpy(mu), torch.from_numpy(logvar)).mean(0).numpy()
    np.testing.assert_allclose(moments.kl_per_dim, kl, rtol=1e-5)


def test_active_mask_uses_the_kl_threshold():
    moments = LatentMoments(3)
    # KL of dim d is 0.5 * mu^2 with logvar 0: 0.5*0.1^2 = 0.005 (inactive), 0.5*0.2^2 = 0.02, 0.5*2^2 = 2
    moments.update(torch.tensor([[0.1, 0.2, 2.0], [-0.1, -0.2, -2.0]]), torch.zeros(2, 3))
    assert moments.to_stats().active.tolist() == [False, True, True]
    assert moments.to_stats(active_threshold=3.0).active.tolist() == [False, False, False]
    assert ACTIVE_THRESHOLD == 0.01


def test_empty_moments_are_an_error():
    with pytest.raises(ValueError, match="at least one frame"):
        LatentMoments(2).to_stats()


def test_reduce_is_identity_in_one_process():
    moments = LatentMoments(2)
    moments.update(torch.ones(3, 2), torch.zeros(3, 2))
    assert moments.reduce(init_distributed("cpu")) is moments


def test_accumulate_latents_encodes_every_batch(tiny_config):
    vae = ConvVAE(tiny_config).eval()
    x = torch.rand(10, 3, 16, 16)
    moments = accumulate_latents(vae, [x[:4], x[4:]], tiny_config.latent_dim)
    mu, _ = vae.encode(x)
    assert moments.count == 10
    np.testing.assert_allclose(moments.to_stats().mean, mu.detach().mean(0).numpy(), rtol=1e-4, atol=1e-6)
