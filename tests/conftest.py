"""Shared fixtures: a tiny VAE config and seeded helpers."""

from __future__ import annotations

import pytest
import torch

from worldmodel.vae import VAEConfig


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> VAEConfig:
    """A small padded-variant VAE that trains in milliseconds."""
    return VAEConfig(height=16, width=16, latent_dim=4, width_multiplier=0.25)
