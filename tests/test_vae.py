import pytest
import torch

from worldmodel.vae.model import ConvVAE, VAEConfig, kl_divergence, vae_loss


@pytest.mark.parametrize(
    ("height", "width", "channels"),
    [(64, 64, 3), (96, 96, 3), (64, 64, 1), (128, 128, 3), (64, 96, 3)],
)
def test_shapes(height, width, channels):
    vae = ConvVAE(VAEConfig(height=height, width=width, channels=channels, latent_dim=8))
    x = torch.rand(2, channels, height, width)
    x_hat, mu, logvar = vae(x)
    assert x_hat.shape == x.shape
    assert mu.shape == logvar.shape == (2, 8)
    assert vae.decode(torch.zeros(3, 8)).shape == (3, channels, height, width)
    assert float(x_hat.min().detach()) >= 0.0 and float(x_hat.max().detach()) <= 1.0


def test_reference_parameter_count():
    vae = ConvVAE(VAEConfig())
    count = lambda modules: sum(p.numel() for m in modules for p in m.parameters())  # noqa: E731
    encoder = count([vae.encoder, vae.fc_mu, vae.fc_logvar])
    decoder = count([vae.fc_decode, vae.decoder])
    assert (encoder, decoder) == (755_744, 3_592_803)
    assert encoder + decoder == 4_348_547


def test_reference_architecture_layers():
    vae = ConvVAE(VAEConfig())
    convs = [m for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.padding == (0, 0) and c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    deconvs = [m for m in vae.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [d.kernel_size[0] for d in deconvs] == [5, 5, 6, 6]


@pytest.mark.parametrize("size", [(63, 64), (64, 40), (0, 64)])
def test_config_rejects_sizes_not_multiple_of_16(size):
    with pytest.raises(ValueError, match="multiples of 16"):
        VAEConfig(height=size[0], width=size[1])


def test_config_rejects_bad_channels():
    with pytest.raises(ValueError, match="channels"):
        VAEConfig(channels=4)


def test_encode_rejects_wrong_input():
    vae = ConvVAE(VAEConfig())
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 3, 64, 64\), got \(2, 3, 96, 96\)"):
        vae.encode(torch.rand(2, 3, 96, 96))
    with pytest.raises(ValueError, match=r"got \(2, 1, 64, 64\)"):
        vae.encode(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"dtype torch\.uint8"):
        vae.encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))


def test_kl_zero_at_prior():
    mu, logvar = torch.zeros(5, 32), torch.zeros(5, 32)
    assert float(kl_divergence(mu, logvar).abs().max()) == 0.0
    loss = vae_loss(torch.zeros(5, 3, 8, 8), torch.zeros(5, 3, 8, 8), mu, logvar, VAEConfig())
    assert float(loss.kl) == 0.0 and float(loss.kl_raw) == 0.0 and float(loss.total) == 0.0


def test_kl_matches_closed_form():
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, -1.0]])
    expected = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)


def test_kl_finite_on_extreme_inputs():
    mu = torch.tensor([[1e4, -1e4]])
    logvar = torch.tensor([[1e4, -1e4]])
    loss = vae_loss(torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16), mu, logvar, VAEConfig(channels=1))
    assert torch.isfinite(loss.total)


def test_recon_is_summed_squared_error_per_image():
    x = torch.zeros(2, 3, 4, 4)
    x_hat = torch.full_like(x, 0.5)
    loss = vae_loss(x, x_hat, torch.zeros(2, 1), torch.zeros(2, 1), VAEConfig(latent_dim=1))
    assert float(loss.recon) == pytest.approx(3 * 4 * 4 * 0.25)


def test_free_bits_floors_each_dimension():
    mu = torch.tensor([[0.1, 3.0], [0.1, 3.0]])  # dim 0 carries 0.005 nats, dim 1 carries 4.5
    logvar = torch.zeros(2, 2)
    x = torch.zeros(2, 3, 4, 4)
    plain = vae_loss(x, x, mu, logvar, VAEConfig(latent_dim=2))
    floored = vae_loss(x, x, mu, logvar, VAEConfig(latent_dim=2, free_bits=0.5))
    assert float(plain.kl) == pytest.approx(0.005 + 4.5)
    assert float(floored.kl) == pytest.approx(0.5 + 4.5)
    assert float(floored.kl_raw) == pytest.approx(float(plain.kl_raw))
    # A dimension below the floor gets no gradient towards the prior.
    mu.requires_grad_(True)
    vae_loss(x, x, mu, logvar, VAEConfig(latent_dim=2, free_bits=0.5)).total.backward()
    assert float(mu.grad[:, 0].abs().sum()) == 0.0 and float(mu.grad[:, 1].abs().sum()) > 0.0


def test_kl_tolerance_floors_each_image():
    mu = torch.tensor([[0.0, 0.0], [3.0, 3.0]])  # image KLs: 0 and 9
    logvar = torch.zeros(2, 2)
    x = torch.zeros(2, 3, 4, 4)
    loss = vae_loss(x, x, mu, logvar, VAEConfig(latent_dim=2, kl_tolerance=0.5))
    assert float(loss.kl) == pytest.approx((1.0 + 9.0) / 2)  # first image floored at 0.5 * 2
    assert float(loss.kl_raw) == pytest.approx(4.5)


def test_loss_in_fp32_under_autocast():
    vae = ConvVAE(VAEConfig(height=16, width=16, latent_dim=4, width_multiplier=0.25))
    x = torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat, mu, logvar = vae(x)
        loss = vae_loss(x, x_hat, mu, logvar, vae.config)
    assert loss.total.dtype == torch.float32


def test_loss_decreases_on_fixed_batch(tiny_config):
    vae = ConvVAE(tiny_config)
    x = torch.zeros(16, 3, 16, 16)
    for i in range(16):  # coloured squares at different places, like objects on a background
        x[i, i % 3, (i % 4) * 4 : (i % 4) * 4 + 6, (i // 4) * 4 : (i // 4) * 4 + 6] = 1.0
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = vae_loss(x, *vae(x), tiny_config).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_reparameterize_uses_generator():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    a = ConvVAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    b = ConvVAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, mu)


def test_reference_decoder_first_layer_as_matmul_equals_transposed_conv():
    vae = ConvVAE(VAEConfig()).eval()
    z = torch.randn(3, 32)
    h = vae.fc_decode(z).view(-1, 1024, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z), vae.decoder(h), atol=1e-5, rtol=1e-4)
