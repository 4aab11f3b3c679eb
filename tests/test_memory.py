import math

import pytest
import torch
from safetensors.torch import save_file

from worldmodel.memory import model as memory
from worldmodel.memory.model import (
    LOG_STD_MIN,
    MDNRNN,
    MemoryConfig,
    MemoryOutput,
    load_memory,
    memory_loss,
    sample,
    save_memory,
)
from worldmodel.vae.checkpoint import CheckpointError

SHA = "0" * 64


def _output(logits, means, log_stds, reward=0.0, end_logit=0.0) -> MemoryOutput:
    """A one-step, one-sequence output with one latent dimension per list entry of components."""
    t = lambda v: torch.tensor(v, dtype=torch.float32).view(1, 1, *torch.tensor(v).shape)  # noqa: E731
    return MemoryOutput(t(logits), t(means), t(log_stds), t([reward])[0], t([end_logit])[0], torch.zeros(1, 1, 1),
                        (torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)))  # fmt: skip


def test_loss_equals_a_hand_computation():
    # one latent dimension, two components: weights 1/4 and 3/4, N(0, 1) and N(1, 2^2); target 1
    out = _output([[0.0, math.log(3.0)]], [[0.0, 1.0]], [[0.0, math.log(2.0)]], reward=0.5, end_logit=0.0)
    cfg = MemoryConfig(latent_dim=1, action_dim=1, reward_weight=2.0, end_weight=3.0)
    density = 0.25 * math.exp(-0.5) / math.sqrt(2 * math.pi) + 0.75 / (2.0 * math.sqrt(2 * math.pi))
    loss = memory_loss(out, torch.ones(1, 1, 1), torch.tensor([[1.5]]), torch.tensor([[1.0]]), cfg)
    assert loss.nll.item() == pytest.approx(-math.log(density), rel=1e-6)
    assert loss.reward.item() == pytest.approx(1.0)
    assert loss.end.item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert loss.total.item() == pytest.approx(-math.log(density) + 2.0 + 3.0 * math.log(2.0), rel=1e-6)


def test_loss_is_finite_far_from_every_component_and_ignores_masked_steps():
    cfg = MemoryConfig(latent_dim=2, action_dim=1, hidden=4)
    model = MDNRNN(cfg)
    out = model(torch.zeros(2, 3, 2), torch.zeros(2, 3, 1))
    near, far = torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)
    far[1, 2] = 1e4  # a padded step, far from every component: its NLL is ~1e20
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[1, 2] = False
    loss = memory_loss(out, far, torch.zeros(2, 3), torch.zeros(2, 3), cfg, mask=mask)
    reference = memory_loss(out, near, torch.zeros(2, 3), torch.zeros(2, 3), cfg, mask=mask)
    torch.testing.assert_close(loss.total, reference.total, rtol=0, atol=0)
    unmasked = memory_loss(out, far, torch.zeros(2, 3), torch.zeros(2, 3), cfg)
    assert torch.isfinite(unmasked.total) and unmasked.total > 1e6
    assert out.log_stds.min() >= LOG_STD_MIN


def test_loss_is_fp32_under_bf16_autocast():
    cfg = MemoryConfig(latent_dim=2, action_dim=1, hidden=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = MDNRNN(cfg)(torch.zeros(1, 2, 2), torch.zeros(1, 2, 1))
        loss = memory_loss(out, torch.zeros(1, 2, 2), torch.zeros(1, 2), torch.zeros(1, 2), cfg)
    assert loss.total.dtype == torch.float32


def test_the_lstm_runs_in_fp32_under_autocast_on_a_cpu_without_a_bf16_lstm(monkeypatch):
    model = MDNRNN(MemoryConfig(latent_dim=2, action_dim=1, hidden=4))
    z, actions = torch.randn(1, 3, 2), torch.randn(1, 3, 1)
    reference = model(z, actions).hidden
    monkeypatch.setattr(memory, "cpu_runs_bf16_lstm", lambda: False)  # oneDNN without AVX-512: no bf16 LSTM
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(z, actions)
    assert out.hidden.dtype == torch.float32 and out.logits.dtype == torch.bfloat16  # the heads still autocast
    torch.testing.assert_close(out.hidden, reference, rtol=0, atol=0)


def test_sampling_temperature():
    out = _output([[0.0, 0.0]], [[-1.0, 1.0]], [[math.log(0.1), math.log(0.1)]])
    out = MemoryOutput(*(x.expand(1, 4000, *x.shape[2:]) if i < 3 else x for i, x in enumerate(out)))
    draws = sample(out, 1.0, torch.Generator().manual_seed(0)).flatten()
    assert abs((draws > 0).float().mean().item() - 0.5) < 0.05  # both components
    assert (draws.abs() - 1).std().item() == pytest.approx(0.1, rel=0.1)
    cold = sample(out, 0.01, torch.Generator().manual_seed(0)).flatten()
    assert (cold.abs() - 1).std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.equal(sample(out, 0.0), torch.full((1, 4000, 1), -1.0))  # first most likely component's mean
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample(out, -1.0)


def test_save_load_round_trip_is_exact(tmp_path):
    model = MDNRNN(MemoryConfig(latent_dim=3, action_dim=5, discrete_actions=True, hidden=8, mixtures=2)).eval()
    path = tmp_path / "memory.safetensors"
    save_memory(path, model, vae_sha256=SHA, step=7)
    ckpt = load_memory(path, vae_sha256=SHA, latent_dim=3)
    assert ckpt.model.config == model.config and ckpt.vae_sha256 == SHA and ckpt.metadata == {"step": 7}
    assert not ckpt.model.training
    z, a = torch.randn(2, 4, 3), model.action_input(torch.tensor([[0, 1, 4, 2], [3, 3, 0, 1]]))
    with torch.no_grad():
        for x, y in zip(model(z, a), ckpt.model(z, a), strict=True):
            assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True)) if isinstance(x, tuple) else torch.equal(
                x, y)  # fmt: skip


def test_load_refuses_another_vae_naming_both(tmp_path):
    path = tmp_path / "memory.safetensors"
    save_memory(path, MDNRNN(MemoryConfig(latent_dim=3, action_dim=2, hidden=4)), vae_sha256=SHA)
    with pytest.raises(CheckpointError, match=f"SHA-256 {SHA}.*SHA-256 {'1' * 64}"):
        load_memory(path, vae_sha256="1" * 64)
    with pytest.raises(CheckpointError, match=r"latents of size 3.*latent_dim 32"):
        load_memory(path, latent_dim=32)


def test_load_refuses_foreign_truncated_and_future_files(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign), metadata={"format": "worldmodel.vae", "format_version": "1"})
    with pytest.raises(CheckpointError, match=r"not a worldmodel memory checkpoint.*train-memory"):
        load_memory(foreign)
    path = tmp_path / "memory.safetensors"
    save_memory(path, MDNRNN(MemoryConfig(latent_dim=3, action_dim=2, hidden=4)), vae_sha256=SHA)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_memory(truncated)
    future = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, str(future), metadata={"format": "worldmodel.memory", "format_version": "2"})
    with pytest.raises(CheckpointError, match="version '2'"):
        load_memory(future)


def test_bad_inputs_are_refused_with_shapes():
    model = MDNRNN(MemoryConfig(latent_dim=3, action_dim=2, discrete_actions=True, hidden=4))
    with pytest.raises(ValueError, match=r"latents of shape \(B, T, 3\), got \(2, 3\)"):
        model(torch.zeros(2, 3), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match=r"actions of shape \(2, 4, 2\)"):
        model(torch.zeros(2, 4, 3), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"in \[0, 2\), got min 0 max 4"):
        model.action_input(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="integer action indices"):
        model.action_input(torch.zeros(2))
    continuous = MDNRNN(MemoryConfig(latent_dim=3, action_dim=2, hidden=4))
    with pytest.raises(ValueError, match=r"action vectors of size 2, got shape \(4, 3\)"):
        continuous.action_input(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="must be positive"):
        MemoryConfig(latent_dim=0, action_dim=2)
