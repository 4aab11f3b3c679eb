"""Shared fixtures: a tiny VAE config and seeded helpers."""

from __future__ import annotations

import os

import pytest
import torch

from worldmodel.device import AUTO_PRECISION_ENV, cpu_has_fast_bf16
from worldmodel.vae import VAEConfig

BF16_IS_TESTED = cpu_has_fast_bf16() or os.environ.get(AUTO_PRECISION_ENV) == "bf16"
needs_bf16 = pytest.mark.skipif(
    not BF16_IS_TESTED,
    reason=f"this CPU has no native bf16 (emulated bf16 is slow); run with {AUTO_PRECISION_ENV}=bf16 to test it anyway",
)
"""Marks a bf16 test: it runs where bf16 is native, or where the suite forces bf16 (``make test-precision``)."""


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed torch, and restore its thread count after tests that train (train_agent sets it)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> VAEConfig:
    """A small padded-variant VAE that trains in milliseconds."""
    return VAEConfig(height=16, width=16, latent_dim=4, width_multiplier=0.25)


TOY_VAE_ACTIVE = (True, False, True, True, False, True)


@pytest.fixture(scope="session")
def toy_vae_path(tmp_path_factory) -> str:
    """An untrained 32x32 RGB VAE checkpoint (z=6) for DotTarget frames, with latent statistics.

    Its mean head is scaled up so that frames differ in latent space by far more than
    equivalence tolerances. Dimensions 1 and 4 are marked inactive (``TOY_VAE_ACTIVE``).
    """
    import numpy as np

    from worldmodel.checkpoint import LatentStats, save_vae
    from worldmodel.frames import FrameSpec
    from worldmodel.vae import ConvVAE

    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(height=32, width=32, latent_dim=6, width_multiplier=0.5))
    with torch.no_grad():
        vae.fc_mu.weight.mul_(100.0)
    stats = LatentStats(
        mean=np.linspace(-0.1, 0.1, 6, dtype=np.float32),
        std=np.linspace(0.5, 2.0, 6, dtype=np.float32),
        active=np.array(TOY_VAE_ACTIVE),
    )
    path = tmp_path_factory.mktemp("vae") / "toy_vae.safetensors"
    save_vae(path, vae, FrameSpec(height=32, width=32), latent_stats=stats, step=0)
    return str(path)


def _greedy_dot_action(state) -> int:
    """DotTarget action moving the agent along the axis where the target is furthest."""
    dx, dy = (state[2:] - state[:2]) * 56.0
    if abs(dx) >= abs(dy):
        return 4 if dx > 0 else 3
    return 2 if dy > 0 else 1


@pytest.fixture
def latent_reference(toy_vae_path):
    """Runs of the single-env LatentObservation, one per env, for equivalence tests of the vector wrappers.

    ``latent_reference(make_env, num_envs, steps, seed, **wrapper_kwargs)`` returns, per env
    ``i`` (reset with ``seed + i``), ``{"reset": first obs, "steps": [...]}`` where each step is
    ``{"action", "obs", "terminated", "truncated", "next_reset"}`` (``next_reset``: the
    observation after the automatic reset, or None). Actions are greedy moves towards the
    target, so episodes end both by termination and by truncation.
    """
    from envs.latent_observation import LatentObservation

    def run(make_env, num_envs: int, steps: int, seed: int, **kwargs):
        runs = []
        for i in range(num_envs):
            env = LatentObservation(make_env(), toy_vae_path, device="cpu", **kwargs)
            obs, info = env.reset(seed=seed + i)
            run_i = {"reset": obs, "steps": []}
            for _ in range(steps):
                action = _greedy_dot_action(info["state"])
                obs, _, terminated, truncated, info = env.step(action)
                step = {"action": action, "obs": obs, "terminated": terminated, "truncated": truncated}
                step["next_reset"] = None
                if terminated or truncated:
                    step["next_reset"], info = env.reset()
                run_i["steps"].append(step)
            runs.append(run_i)
            env.close()
        return runs

    return run


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: on 2 busy shared cores, small-batch inference with 2 OpenMP threads
    can be 100x slower (threads spin waiting for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_blob_dataset(data_dir, *, episodes: int = 4, steps: int = 23, size: int = 16, seed: int = 0):
    """A tiny dataset of a red blob drifting over green (frames ``size`` x ``size``), with the blob's
    position as the true state, written with worldmodel.dataset.DatasetWriter; returns ``data_dir``."""
    import numpy as np

    from worldmodel.dataset import DatasetWriter
    from worldmodel.frames import FrameSpec

    yy, xx = np.mgrid[0:size, 0:size] / size
    with DatasetWriter(data_dir, env_id="Blob-v0", frame_spec=FrameSpec(height=size, width=size)) as writer:
        for i in range(episodes):
            rng = np.random.default_rng(seed + i)
            pos = np.clip(rng.uniform(0.2, 0.8, 2) + np.cumsum(rng.normal(0, 0.04, (steps + 1, 2)), 0), 0.1, 0.9)
            frames = np.zeros((steps + 1, size, size, 3), np.uint8)
            dist = (yy[None] - pos[:, :1, None]) ** 2 + (xx[None] - pos[:, 1:, None]) ** 2  # (T+1, size, size)
            frames[..., 0] = (255 * np.exp(-dist / 0.01)).astype(np.uint8)
            frames[..., 1] = 80
            truncated = np.zeros(steps, bool)
            truncated[-1] = True
            writer.add_episode(frames, np.zeros((steps, 1), np.float32), np.zeros(steps), np.zeros(steps, bool),
                               truncated, seed=seed + i, episode_index=i, states=pos.astype(np.float32))  # fmt: skip
    return data_dir


@pytest.fixture(scope="session")
def blob_dataset(tmp_path_factory) -> str:
    """A 16x16 RGB dataset of 4 episodes x 24 frames with 2-d true states (see ``write_blob_dataset``)."""
    return str(write_blob_dataset(tmp_path_factory.mktemp("blob") / "data"))
