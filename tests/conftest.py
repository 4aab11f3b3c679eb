"""Shared fixtures: a tiny VAE config and seeded helpers."""

from __future__ import annotations

import os

import worldmodel  # noqa: F401 - first: its OpenMP defaults must be in the environment before torch loads

# isort: split
import pytest
import torch

from worldmodel.common.device import AUTO_PRECISION_ENV, cpu_has_fast_bf16
from worldmodel.vae.model import VAEConfig

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

    from worldmodel.frames import FrameSpec
    from worldmodel.vae.checkpoint import LatentStats, save_vae
    from worldmodel.vae.model import ConvVAE

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


@pytest.fixture(scope="session")
def toy_memory_path(toy_vae_path, tmp_path_factory) -> str:
    """An untrained memory model (hidden 16) for the toy VAE's latents and DotTarget's 5 actions."""
    from worldmodel.memory.model import MDNRNN, MemoryConfig, save_memory
    from worldmodel.vae.checkpoint import file_sha256

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("memory") / "memory.safetensors"
    model = MDNRNN(MemoryConfig(6, 5, discrete_actions=True, hidden=16))
    save_memory(path, model, vae_sha256=file_sha256(toy_vae_path))
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

    ``latent_reference(make_env, num_envs, steps, seed, wrap=None, **wrapper_kwargs)`` returns, per env
    ``i`` (reset with ``seed + i``), ``{"reset": first obs, "steps": [...]}`` where each step is
    ``{"action", "obs", "terminated", "truncated", "next_reset"}`` (``next_reset``: the
    observation after the automatic reset, or None). Actions are greedy moves towards the
    target, so episodes end both by termination and by truncation. ``wrap(env)`` replaces the
    LatentObservation (then ``wrapper_kwargs`` are unused).
    """
    from envs.latent.gymnasium_env import LatentObservation
    from envs.latent.spec import LatentSpec

    def run(make_env, num_envs: int, steps: int, seed: int, wrap=None, **kwargs):
        runs = []
        for i in range(num_envs):
            env = (
                wrap(make_env())
                if wrap
                else LatentObservation(make_env(), LatentSpec(toy_vae_path, device="cpu", **kwargs))
            )
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
    position as the true state, written with worldmodel.data.DatasetWriter; returns ``data_dir``."""
    import numpy as np

    from worldmodel.data import DatasetWriter
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


def interrupt_call(monkeypatch, module, name: str, call: int, *, after: bool = False) -> None:
    """Make ``module.name`` raise KeyboardInterrupt (standing in for ``kill -9``) at its ``call``-th call,
    before running it, or right after it with ``after`` (e.g. just after an epoch's state is committed)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call and not after:
            raise KeyboardInterrupt
        result = real(*args, **kwargs)
        if calls["n"] == call:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(module, name, wrapper)


def assert_same_runs(a, b) -> None:
    """Two run directories hold identical checkpoints and resume states, and the same metrics but for timings."""
    import json

    from safetensors import safe_open

    for name in ("last.safetensors", "best.safetensors", "resume.safetensors"):
        with safe_open(str(a / name), framework="pt") as fa, safe_open(str(b / name), framework="pt") as fb:
            assert set(fa.keys()) == set(fb.keys()), name
            for key in fa.keys():
                assert torch.equal(fa.get_tensor(key), fb.get_tensor(key)), f"{name}: {key} differs"

    def records(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        timing = lambda k: "per_s" in k or "wait" in k or k == "wall_s"  # noqa: E731
        return [{k: v for k, v in json.loads(line).items() if not timing(k)} for line in lines]

    assert records(a) == records(b)


def nan_loss_at_call(monkeypatch, module, name: str, call: int, *terms: str) -> None:
    """Make the loss function ``module.name`` return NaN in ``terms`` (fields of its NamedTuple) at its
    ``call``-th call."""
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == call:
            return loss._replace(**{term: getattr(loss, term) * float("nan") for term in terms})
        return loss

    monkeypatch.setattr(module, name, wrapper)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_rank(rank: int, port: int, train, config, report_dir: str) -> None:
    """Rank ``rank`` of 2 on the CPU (gloo): check the collectives, then ``train(config)``; report as JSON."""
    import json
    from pathlib import Path

    from worldmodel.training.distributed import all_reduce_sum, all_reduce_values, any_rank, init_distributed

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    report = {
        "rank": ctx.rank,
        "sum": float(all_reduce_sum(torch.tensor(float(rank + 1)), ctx)),
        "values": all_reduce_values({"a": 1.0, "b": float(rank)}, ctx),
        "any_when_rank1": any_rank(rank == 1, ctx),
        "any_when_none": any_rank(False, ctx),
    }
    report["returned"] = str(train(config))  # joins the group made above, leaves it at the end
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report))


def spawn_ddp(train, config, root) -> list[dict]:
    """Run ``train(config)`` (``train_vae``, ``train_memory``) as a 2-process DDP job on the CPU; the ranks' reports."""
    import json
    from pathlib import Path

    import torch.multiprocessing as mp

    mp.spawn(_ddp_rank, args=(_free_port(), train, config, str(root)), nprocs=2, join=True)
    return [json.loads((Path(root) / f"rank{r}.json").read_text()) for r in range(2)]
