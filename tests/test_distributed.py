"""DDP on CPU with 2 processes (gloo): collectives, one step equal to a single-process step, loadable output."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import needs_bf16, spawn_ddp
from safetensors import safe_open

from worldmodel.training.distributed import any_rank, init_distributed
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.model import ConvVAE
from worldmodel.vae.train import TrainVAEConfig, train_vae

# Tiny VAEs after one step carry little KL; test_train.py::test_posterior_collapse_warns checks the warning.
pytestmark = pytest.mark.filterwarnings("ignore::worldmodel.vae.train.PosteriorCollapseWarning")


def _config(data_dir: str, out: Path, **overrides) -> TrainVAEConfig:
    """One step, pinned to fp32 by default: DDP == single process is exact only there."""
    kwargs = dict(
        steps=1, batch_size=16, warmup_steps=0, latent_dim=4, width_multiplier=0.25, threads=1,
        val_fraction=0.25, progress=False, tensorboard=False, figures=False, device="cpu", precision="fp32",
    )  # fmt: skip
    kwargs.update(overrides)
    return TrainVAEConfig(data_dir, out=str(out), **kwargs)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if not k.startswith("latent_stats.")}


@pytest.fixture(scope="module")
def ddp_run(blob_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    config = _config(blob_dataset, root / "ddp")
    return config, spawn_ddp(train_vae, config, root)


def test_collectives_agree_on_every_rank(ddp_run):
    _, reports = ddp_run
    assert [r["sum"] for r in reports] == [3.0, 3.0]
    assert [r["values"] for r in reports] == [{"a": 2.0, "b": 1.0}] * 2
    assert [r["any_when_rank1"] for r in reports] == [True, True]
    assert [r["any_when_none"] for r in reports] == [False, False]


def test_ddp_step_equals_single_process_step(ddp_run, blob_dataset, tmp_path):
    config, reports = ddp_run
    out = Path(config.out)
    assert {r["returned"] for r in reports} == {str(out / "best.safetensors")}
    single = tmp_path / "single"
    train_vae(_config(blob_dataset, single))
    ddp_w, single_w = _tensors(out / "last.safetensors"), _tensors(single / "last.safetensors")
    torch.manual_seed(config.seed)
    init = ConvVAE(load_vae(single / "last.safetensors").vae.config).state_dict()
    assert ddp_w.keys() == single_w.keys()
    moved = 0
    for key, value in single_w.items():
        torch.testing.assert_close(ddp_w[key], value, rtol=1e-5, atol=1e-6, msg=key)
        moved += int(not torch.equal(value, init[key]))
    assert moved == len(single_w), "every tensor takes part in the step"
    ddp_metrics = json.loads((out / "metrics.jsonl").read_text())
    single_metrics = json.loads((single / "metrics.jsonl").read_text())
    for key in ("train/total", "val/total", "val/mse_per_pixel"):
        assert ddp_metrics[key] == pytest.approx(single_metrics[key], rel=1e-5), key


@needs_bf16
def test_ddp_steps_agree_with_single_process_in_bf16(blob_dataset, tmp_path):
    """Under bf16 autocast DDP and single process differ by rounding only; the loss stays finite and falls."""
    config = _config(blob_dataset, tmp_path / "ddp", steps=None, epochs=3, warmup_steps=2, lr=3e-3, precision="bf16")
    spawn_ddp(train_vae, config, tmp_path)
    train_vae(dataclasses.replace(config, out=str(tmp_path / "single")))
    ddp_w = _tensors(tmp_path / "ddp" / "last.safetensors")
    single_w = _tensors(tmp_path / "single" / "last.safetensors")
    torch.manual_seed(config.seed)
    init = ConvVAE(load_vae(tmp_path / "single" / "last.safetensors").vae.config).state_dict()
    for key, value in single_w.items():  # the two runs' updates agree within 10% (measured: under 3%)
        update = (value - init[key]).norm()
        assert (ddp_w[key] - value).norm() <= 0.1 * update, key
    for run in ("ddp", "single"):
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert json.loads((tmp_path / run / "config.json").read_text())["resolved"]["precision"] == "bf16"
        losses = [r["val/total"] for r in records]
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], (run, losses)


def test_ddp_run_writes_a_loadable_checkpoint(ddp_run):
    config, _ = ddp_run
    out = Path(config.out)
    ckpt = load_vae(out / "best.safetensors")
    assert ckpt.latent_stats is not None and ckpt.metadata["step"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_single_process_context():
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert any_rank(True, ctx) and not any_rank(False, ctx)


@pytest.mark.slow
def test_torchrun_command(blob_dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "worldmodel",
           "train-vae", blob_dataset, "--out", str(out), "--epochs", "2", "--batch-size", "16", "--latent-dim", "4",
           "--width-multiplier", "0.25", "--device", "cpu", "--no-progress"]  # fmt: skip
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(out / "best.safetensors")
    assert load_vae(out / "best.safetensors").metadata["epoch"] >= 1
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    assert (out / "recon.png").exists()
