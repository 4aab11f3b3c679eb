import cv2
import numpy as np
import pytest
import torch

from worldmodel.frames import FrameSpec, frames_to_tensor
from worldmodel.vae.diagnostics import (
    image_grid,
    kl_bar_chart,
    latent_traversal,
    linear_probe_r2,
    most_active_dims,
    prior_samples,
    reconstruction_grid,
    write_png,
)
from worldmodel.vae.model import ConvVAE


@pytest.fixture
def vae(tiny_config):
    return ConvVAE(tiny_config).eval()


def test_image_grid_places_tiles_with_gaps():
    a = np.full((2, 3, 4, 3), 10, np.uint8)
    b = np.full((1, 3, 4, 1), 200, np.uint8)  # grayscale row, shorter
    grid = image_grid([a, b], pad=1)
    assert grid.shape == (3 + 1 + 3, 4 + 1 + 4, 3)
    assert (grid[:3, :4] == 10).all() and (grid[:3, 5:] == 10).all()
    assert (grid[3] == 255).all() and (grid[:, 4] == 255).all()
    assert (grid[4:, :4] == 200).all() and (grid[4:, 5:] == 255).all()


def test_write_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", image)
    back = cv2.cvtColor(cv2.imread(str(tmp_path / "x.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, image)


def test_reconstruction_grid_shows_frames_above_reconstructions(vae):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    grid = reconstruction_grid(vae, frames_to_tensor(frames, FrameSpec(height=16, width=16)))
    assert np.array_equal(grid[:16, 18:34], frames[1])
    mu, _ = vae.encode(frames_to_tensor(frames, FrameSpec(height=16, width=16)))
    expected = (vae.decode(mu).detach()[2].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(grid[18:34, 36:52], expected)


def test_prior_samples_and_traversal_shapes_and_content(vae):
    samples = prior_samples(vae, 6, torch.Generator().manual_seed(0), rows=2)
    assert samples.shape == (2 * 16 + 2, 3 * 16 + 2 * 2, 3)
    x0 = torch.rand(1, 3, 16, 16)
    kl = np.array([0.0, 2.0, 0.5, 1.0])
    traversal = latent_traversal(vae, x0, kl, k=2, steps=5)
    assert traversal.shape == (2 * 16 + 2, 5 * 16 + 4 * 2, 3)
    first, last = traversal[:16, :16], traversal[:16, -16:]
    assert not np.array_equal(first, last), "sweeping the most active dimension changes the image"


def test_most_active_dims_order():
    assert most_active_dims(np.array([0.5, 0.1, 2.0, 0.5]), 3).tolist() == [2, 0, 3]


def test_kl_bar_chart_is_an_image():
    chart = kl_bar_chart(np.array([0.0, 0.5, 3.0, 0.001]), threshold=0.01)
    assert chart.dtype == np.uint8 and chart.ndim == 3 and chart.shape[2] == 3
    assert chart.std() > 5


def test_linear_probe_r2():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 4))
    states = np.stack([z[:, 0] * 2 - z[:, 3], rng.normal(size=300), np.full(300, 7.0)], axis=1)
    r2 = linear_probe_r2(z[:200], states[:200], z[200:], states[200:])
    assert r2[0] > 0.999
    assert r2[1] < 0.1
    assert np.isnan(r2[2])  # constant on the held-out set: undefined
