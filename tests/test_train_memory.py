import copy
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import assert_same_runs, interrupt_call, nan_loss_at_call, spawn_ddp
from safetensors import safe_open

from worldmodel.cli import main
from worldmodel.frames import FrameSpec
from worldmodel.memory import train as train_mod
from worldmodel.memory.evaluate import evaluate, fit_baselines
from worldmodel.memory.model import MDNRNN, MemoryConfig, load_memory
from worldmodel.memory.sequences import LatentEpisode, LatentSequences, LatentsError, write_latents
from worldmodel.memory.train import TrainMemoryConfig, TrainMemoryError, train_memory
from worldmodel.training import loop as loop_mod
from worldmodel.training.distributed import init_distributed
from worldmodel.training.run import NonFiniteLossError
from worldmodel.vae.checkpoint import file_sha256, save_vae
from worldmodel.vae.model import ConvVAE, VAEConfig

MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], np.float32)


def toy_episode(rng: np.random.Generator, steps: int = 30) -> LatentEpisode:
    """Deterministic toy dynamics in a 3-d latent space: a point moved by 5 discrete actions (0.15 a step,
    clipped to [-1, 1]) and a constant per episode. Reward: x after the move; terminated on reaching x = 1."""
    p, c = rng.uniform(-0.8, 0.8, 2).astype(np.float32), np.float32(rng.uniform(-1, 1))
    zs, actions, rewards, ends = [np.r_[p, c]], [], [], []
    for _ in range(steps):
        a = int(rng.integers(0, 5))
        p = np.clip(p + 0.15 * MOVES[a], -1, 1)
        zs.append(np.r_[p, c])
        actions.append(a)
        rewards.append(p[0])
        ends.append(bool(p[0] >= 1.0))
        if ends[-1]:
            break
    truncated = np.zeros(len(ends), bool)
    truncated[-1] = not ends[-1]
    mu = np.array(zs, np.float32)
    return LatentEpisode(mu, np.full_like(mu, -12.0), np.array(actions), np.array(rewards, np.float32),
                         np.array(ends), truncated)  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 3-d VAE checkpoint (only its hash matters) and 40 toy episodes of latents tied to it."""
    tmp = tmp_path_factory.mktemp("toy")
    save_vae(
        tmp / "vae.safetensors", ConvVAE(VAEConfig(16, 16, latent_dim=3, width_multiplier=0.25)), FrameSpec(16, 16)
    )
    rng = np.random.default_rng(0)
    write_latents(tmp / "latents", [toy_episode(rng) for _ in range(40)],
                  vae_sha256=file_sha256(tmp / "vae.safetensors"), env_id="Toy-v0")  # fmt: skip
    return tmp


def config(toy, out, **overrides) -> TrainMemoryConfig:
    kwargs = dict(vae=str(toy / "vae.safetensors"), out=str(out), latents=str(toy / "latents"), hidden=32,
                  mixtures=2, seq_len=16, batch_size=8, epochs=3, lr=5e-3, val_fraction=0.2, device="cpu",
                  tensorboard=False, progress=False, threads=1)  # fmt: skip
    kwargs.update(overrides)
    return TrainMemoryConfig(None, **kwargs)


def tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_learns_toy_dynamics_far_better_than_copying_the_last_latent(toy, tmp_path):
    best = train_memory(config(toy, tmp_path / "run", epochs=60, patience=0))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    print({k: round(v, 3) for k, v in summary.items() if isinstance(v, float)}, summary["nll_per_dim"],
          summary["nll_copy_per_dim"])  # fmt: skip
    moving = slice(0, 2)  # the third dimension is constant within an episode: copying it is exact
    assert max(summary["nll_per_dim"][moving]) < min(summary["nll_copy_per_dim"][moving]) - 1.0
    assert summary["nll"] < summary["nll_copy"] and summary["nll"] < summary["nll_gaussian"] - 1.5
    for k in (1, 5, 20):
        assert summary[f"open_loop_model_rmse@{k}"] < 0.5 * summary[f"open_loop_copy_rmse@{k}"], k
    assert summary["reward_mse"] < 0.5 * summary["reward_mse_mean"]
    assert len(summary["nll_per_dim"]) == 3
    ckpt = load_memory(best, vae_sha256=file_sha256(toy / "vae.safetensors"), latent_dim=3)
    assert ckpt.model.config.discrete_actions and ckpt.model.config.action_dim == 5


def test_a_new_model_starts_as_the_copy_baseline_at_each_dimensions_scale(toy):
    latents = LatentSequences.open(toy / "latents", vae_sha256=file_sha256(toy / "vae.safetensors"))
    rows = np.arange(latents.num_episodes)
    base = fit_baselines(latents, rows)  # the toy's third dimension never moves within an episode
    torch.manual_seed(0)
    default = MDNRNN(MemoryConfig(latent_dim=3, action_dim=5, discrete_actions=True, hidden=32, mixtures=2))
    started = copy.deepcopy(default)
    started.start_as_copy(torch.from_numpy(base.step_rms), base.reward_mean, base.end_rate)
    before, after = (evaluate(model, latents, rows, base, 8, init_distributed("cpu")) for model in (default, started))
    assert after["nll_per_dim"] == pytest.approx(after["nll_copy_per_dim"], abs=0.02)
    assert after["reward_mse"] == pytest.approx(after["reward_mse_mean"], rel=0.02)  # the mean reward
    assert after["end_bce"] == pytest.approx(after["end_bce_rate"], rel=0.02)  # the end rate
    assert after["nll_per_dim"][2] < -6.0  # a dimension that does not move: its scale starts at the floor
    assert before["nll"] > before["nll_copy"] + 1.5  # PyTorch's default start: scale ~1 in every dimension


def test_resume_after_kills_equals_uninterrupted_run(toy, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_memory(config(toy, straight))

    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:  # killed right after epoch 1 committed its state
        interrupt_call(patch, loop_mod, "save_resume_state", 1, after=True)
        with pytest.raises(KeyboardInterrupt):
            train_memory(config(toy, resumed))
    with monkeypatch.context() as patch:  # 8 windows an epoch: calls 1-8 are epoch 2's, 12 is in epoch 3
        interrupt_call(patch, train_mod, "memory_loss", 12)
        with pytest.raises(KeyboardInterrupt):
            train_memory(config(toy, resumed, resume=True))
    assert metrics(resumed)[-1]["epoch"] == 2

    train_memory(config(toy, resumed, resume=True))
    assert_same_runs(straight, resumed)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(toy, tmp_path, monkeypatch):
    # 8 windows an epoch (32 episodes of <= 31 steps, 8 a batch, 16-step windows): call 9 is step 8 (epoch 2)
    nan_loss_at_call(monkeypatch, train_mod, "memory_loss", 9, "total", "nll")
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 8 \(epoch 2\): total nan, nll nan.*last good"):
        train_memory(config(toy, out))
    last = load_memory(out / "last.safetensors")
    assert last.metadata["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in last.model.parameters())


def test_bad_inputs_are_refused(toy, tmp_path):
    save_vae(tmp_path / "other.safetensors", ConvVAE(VAEConfig(16, 16, latent_dim=3, width_multiplier=0.25)),
             FrameSpec(16, 16))  # fmt: skip
    theirs = file_sha256(tmp_path / "other.safetensors")
    with pytest.raises(LatentsError, match=f"SHA-256 {file_sha256(toy / 'vae.safetensors')}.*SHA-256 {theirs}"):
        train_memory(config(toy, tmp_path / "a", vae=str(tmp_path / "other.safetensors")))
    with pytest.raises(TrainMemoryError, match="give a dataset directory DATA, or --latents"):
        train_memory(config(toy, tmp_path / "b", latents=None))
    with pytest.raises(TrainMemoryError, match="--action-dim 3 is too small: the data holds action 4"):
        train_memory(config(toy, tmp_path / "c", action_dim=3))
    train_memory(config(toy, tmp_path / "d", epochs=1))
    with pytest.raises(TrainMemoryError, match="already holds a training run; pass --resume"):
        train_memory(config(toy, tmp_path / "d", epochs=1))
    with pytest.raises(TrainMemoryError, match=r"--resume: the run was trained with memory config .*hidden=32"):
        train_memory(config(toy, tmp_path / "d", hidden=16, resume=True))
    one = write_latents(tmp_path / "one", [toy_episode(np.random.default_rng(0))],
                        vae_sha256=file_sha256(toy / "vae.safetensors"), env_id="Toy-v0")  # fmt: skip
    with pytest.raises(TrainMemoryError, match="holds 1 episode; holding some out needs at least 2"):
        train_memory(config(toy, tmp_path / "e", latents=str(one.path)))


def test_train_memory_command_encodes_the_dataset_first(blob_dataset, tmp_path, capsys):
    vae = tmp_path / "vae.safetensors"
    save_vae(vae, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
    argv = ["train-memory", blob_dataset, "--vae", str(vae), "--out", str(tmp_path / "run"), "--hidden", "8",
            "--epochs", "1", "--device", "cpu", "--no-tensorboard", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run" / "best.safetensors")
    ckpt = load_memory(tmp_path / "run" / "best.safetensors", vae_sha256=file_sha256(vae))
    assert not ckpt.model.config.discrete_actions and ckpt.model.config.action_dim == 1
    assert (tmp_path / "run" / "latents" / "latents.json").exists()
    strip = cv2.imread(str(tmp_path / "run" / "rollout.png"))  # real | VAE | dreamt rows of 23 - 10 frames
    assert strip.shape == (3 * 16 + 2 * 2, 13 * 16 + 12 * 2, 3)
    assert main(argv) == 2
    assert "already holds a training run" in capsys.readouterr().err
    save_vae(tmp_path / "vae32.safetensors", ConvVAE(VAEConfig(32, 32, latent_dim=4, width_multiplier=0.25)),
             FrameSpec(32, 32))  # fmt: skip
    argv[2:6] = ["--vae", str(tmp_path / "vae32.safetensors"), "--out", str(tmp_path / "run32")]
    assert main(argv) == 2
    assert "but the VAE" in capsys.readouterr().err and not (tmp_path / "run32").exists()


def test_ddp_steps_equal_single_process_steps(toy, tmp_path):
    """2 ranks (gloo): 32 training episodes in batches of 31 and 1 split 16/15 and 1/none (a rank of masked
    padding), sampled latents drawn once per batch; the weights and metrics equal a single process's."""
    cfg = config(toy, tmp_path / "ddp", epochs=1, batch_size=31, patience=0)
    reports = spawn_ddp(train_memory, cfg, tmp_path)
    assert {r["returned"] for r in reports} == {str(tmp_path / "ddp" / "best.safetensors")}
    single = tmp_path / "single"
    train_memory(config(toy, single, epochs=1, batch_size=31, patience=0))
    ddp_w, single_w = tensors(tmp_path / "ddp" / "last.safetensors"), tensors(single / "last.safetensors")
    assert ddp_w.keys() == single_w.keys()
    for key, value in single_w.items():
        torch.testing.assert_close(ddp_w[key], value, rtol=1e-5, atol=1e-6, msg=key)
    (ddp_m,), (single_m,) = metrics(tmp_path / "ddp"), metrics(single)
    assert ddp_m["step"] == single_m["step"] == 3  # windows of 16 steps: 2 in the first batch, 1 in the second
    for key, value in single_m.items():
        if key.startswith(("train/", "val/")) and not key.endswith("per_s") and value is not None:
            # abs: val/total sums terms of size ~1 that nearly cancel when the heads start at the baselines
            assert ddp_m[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and load_memory(tmp_path / "ddp" / "best.safetensors").metadata["step"] == 3


@pytest.mark.slow
def test_torchrun_command_encodes_on_rank_0(blob_dataset, tmp_path):
    vae = tmp_path / "vae.safetensors"
    save_vae(vae, ConvVAE(VAEConfig(16, 16, latent_dim=4, width_multiplier=0.25)), FrameSpec(16, 16))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "worldmodel",
           "train-memory", blob_dataset, "--vae", str(vae), "--out", str(out), "--hidden", "8", "--epochs", "2",
           "--batch-size", "2", "--device", "cpu", "--no-progress"]  # fmt: skip
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(out / "best.safetensors")
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    assert len(metrics(out)) == 2 and (out / "rollout.png").exists()
