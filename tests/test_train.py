import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_blob_dataset
from safetensors import safe_open

from worldmodel import train as train_mod
from worldmodel.checkpoint import load_vae
from worldmodel.cli import main as cli_main
from worldmodel.train import (
    BatchPrefetcher,
    NonFiniteLossError,
    PosteriorCollapseWarning,
    TrainVAEConfig,
    TrainVAEError,
    train_vae,
)

# Tiny VAEs after a few steps carry little KL; test_posterior_collapse_warns checks the warning itself.
pytestmark = pytest.mark.filterwarnings("ignore::worldmodel.train.PosteriorCollapseWarning")


def tiny(data_dir, out, **overrides) -> TrainVAEConfig:
    """A 16x16, z=4, width 0.25 VAE on the blob dataset: each epoch is 4 steps of 16 frames."""
    kwargs = dict(
        epochs=3, batch_size=16, lr=3e-3, warmup_steps=2, latent_dim=4, width_multiplier=0.25,
        threads=1, progress=False, tensorboard=False, figures=False, val_fraction=0.25,
    )  # fmt: skip
    kwargs.update(overrides)
    return TrainVAEConfig(str(data_dir), out=str(out), **kwargs)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def full_run(blob_dataset, tmp_path_factory) -> Path:
    """A run with every diagnostic on (figures, TensorBoard), 4 epochs."""
    out = tmp_path_factory.mktemp("train") / "run"
    train_vae(tiny(blob_dataset, out, epochs=4, figures=True, tensorboard=True))
    return out


def test_training_lowers_validation_loss_and_writes_checkpoints(full_run):
    records = metrics(full_run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["val/total"] < 0.9 * records[0]["val/total"]
    assert records[-1]["train/total"] < records[0]["train/total"]
    best = load_vae(full_run / "best.safetensors")
    last = load_vae(full_run / "last.safetensors")
    assert best.frame_spec.shape == (16, 16, 3) and best.vae.config.latent_dim == 4
    assert last.metadata["epoch"] == 4 and last.metadata["step"] == 16
    assert best.metadata["val_loss"] == min(r["val/total"] for r in records)
    assert best.latent_stats is not None and best.latent_stats.mean.shape == (4,)
    for key in ("lr", "train/recon", "train/kl", "val/recon", "val/kl", "train/images_per_s", "train/data_wait_share"):
        assert np.isfinite(records[-1][key]), key


def test_summary_reports_held_out_quality(full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    records = metrics(full_run)
    best = min(records, key=lambda r: r["val/total"])
    assert summary["val_mse_per_pixel"] == pytest.approx(best["val/mse_per_pixel"])
    assert summary["val_psnr_db"] == pytest.approx(-10 * np.log10(best["val/mse_per_pixel"]))
    assert 0 < summary["val_mse_per_pixel"] < records[0]["val/mse_per_pixel"]
    assert len(summary["linear_probe_r2"]) == 2  # the blob's (y, x)
    assert summary["active_dims"] == int(load_vae(full_run / "best.safetensors").latent_stats.active.sum())
    assert summary["wall_s"] > 0 and summary["steps"] == 16


def test_diagnostic_files_are_non_trivial(full_run):
    import cv2

    for name in ("recon", "samples", "traversal", "kl"):
        image = cv2.imread(str(full_run / f"{name}.png"))
        assert image is not None and image.ndim == 3, name
        assert image.std() > 5, f"{name}.png is (nearly) constant"
    events = list((full_run / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000
    config = json.loads((full_run / "config.json").read_text())
    assert config["resolved"]["precision"] in ("fp32", "bf16")


def test_resume_after_kills_equals_uninterrupted_run(blob_dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_vae(tiny(blob_dataset, straight))

    resumed = tmp_path / "resumed"
    real_save, real_loss = train_mod.save_train_state, train_mod.vae_loss

    def save_then_die(*args, **kwargs):  # killed right after epoch 1 committed its state
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_train_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_vae(tiny(blob_dataset, resumed))
    monkeypatch.setattr(train_mod, "save_train_state", real_save)

    calls = {"n": 0}

    def loss_then_die(*args, **kwargs):  # calls 1-4: epoch 2's steps, 5: its validation, 7: in epoch 3
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_mod, "vae_loss", loss_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_vae(tiny(blob_dataset, resumed, resume=True))
    assert metrics(resumed)[-1]["epoch"] == 2
    monkeypatch.setattr(train_mod, "vae_loss", real_loss)

    train_vae(tiny(blob_dataset, resumed, resume=True))
    for name in ("last.safetensors", "best.safetensors", "resume.safetensors"):
        a, b = tensors(straight / name), tensors(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    drop_timing = lambda r: {k: v for k, v in r.items() if "per_s" not in k and "wait" not in k and k != "wall_s"}  # noqa: E731
    assert [drop_timing(r) for r in metrics(straight)] == [drop_timing(r) for r in metrics(resumed)]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(blob_dataset, tmp_path, monkeypatch):
    real_loss = train_mod.vae_loss
    calls = {"n": 0}

    def nan_in_epoch_two(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:  # calls 1-4: the steps of epoch 1, 5: its validation, 6: step 4 (epoch 2)
            return loss._replace(total=loss.total * float("nan"), recon=loss.recon * float("nan"))
        return loss

    monkeypatch.setattr(train_mod, "vae_loss", nan_in_epoch_two)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 4 \(epoch 2\).*last good checkpoint"):
        train_vae(tiny(blob_dataset, out))
    last = load_vae(out / "last.safetensors")
    assert last.metadata["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in last.vae.parameters())


def test_posterior_collapse_warns(blob_dataset, tmp_path):
    with pytest.warns(PosteriorCollapseWarning, match="latent dimensions carry"):
        train_vae(tiny(blob_dataset, tmp_path / "run", epochs=1, beta=1000.0))


def test_early_stopping(blob_dataset, tmp_path):
    out = tmp_path / "run"
    train_vae(tiny(blob_dataset, out, epochs=6, lr=1e-9, warmup_steps=0, patience=1, min_delta=1e9))
    assert len(metrics(out)) == 2  # epoch 1 sets the best; epoch 2 fails to beat it by min_delta


def test_steps_limit_and_hflip(blob_dataset, tmp_path):
    out = tmp_path / "run"
    train_vae(tiny(blob_dataset, out, steps=6, hflip=True))
    assert [r["step"] for r in metrics(out)] == [4, 6]


@pytest.mark.parametrize(
    ("episodes", "overrides", "match"),
    [
        (1, {}, "at least 2 episodes"),
        (4, {"image_size": 64}, "does not match the dataset's frames of 16x16"),
        (4, {"batch_size": 1000}, "fewer than one batch"),
        (4, {"precision": "fp16", "device": "cpu"}, "fp16.*needs a CUDA device"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, episodes, overrides, match):
    data = write_blob_dataset(tmp_path / "data", episodes=episodes)
    with pytest.raises(ValueError, match=match):
        train_vae(tiny(data, tmp_path / "run", **overrides))
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_empty_dataset_is_rejected(tmp_path):
    from worldmodel.dataset import DatasetWriter
    from worldmodel.frames import FrameSpec

    with DatasetWriter(tmp_path / "data", env_id="Blob-v0", frame_spec=FrameSpec(height=16, width=16)):
        pass
    with pytest.raises(ValueError, match="holds no complete shard yet; collect episodes"):
        train_vae(tiny(tmp_path / "data", tmp_path / "run"))


def test_run_directory_problems(blob_dataset, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(TrainVAEError, match="cannot write to the run directory"):
        train_vae(tiny(blob_dataset, blocker / "run"))
    with pytest.raises(TrainVAEError, match=r"holds no resume\.safetensors"):
        train_vae(tiny(blob_dataset, tmp_path / "new", resume=True))
    out = tmp_path / "run"
    train_vae(tiny(blob_dataset, out, epochs=1))
    with pytest.raises(TrainVAEError, match="already holds a training run; pass --resume"):
        train_vae(tiny(blob_dataset, out, epochs=1))
    with pytest.raises(TrainVAEError, match=r"another architecture \(latent_dim: saved 4 vs now 8\)"):
        train_vae(tiny(blob_dataset, out, epochs=2, latent_dim=8, resume=True))


def test_cli(blob_dataset, tmp_path, capsys):
    args = ["train-vae", blob_dataset, "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16",
            "--latent-dim", "4", "--width-multiplier", "0.25", "--threads", "1", "--no-progress",
            "--no-figures", "--no-tensorboard"]  # fmt: skip
    assert cli_main(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run" / "best.safetensors")
    assert cli_main([*args[:3], str(tmp_path / "other"), "--image-size", "32"]) == 2
    assert "does not match the dataset's frames" in capsys.readouterr().err


def test_prefetcher_reports_errors_and_waits():
    class Broken:
        def frames(self, idx):
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"), BatchPrefetcher(Broken(), [np.arange(2)]) as batches:
        list(batches)

    class Slow:
        def frames(self, idx):
            import time

            time.sleep(0.05)
            return np.zeros((len(idx), 2, 2, 3), np.uint8)

    with BatchPrefetcher(Slow(), [np.arange(2)] * 3) as batches:
        assert len(list(batches)) == 3
    assert batches.wait_s > 0.1


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_training(blob_dataset, tmp_path, precision):
    out = tmp_path / "run"
    train_vae(tiny(blob_dataset, out, epochs=2, device="cuda", precision=precision))
    assert metrics(out)[-1]["val/total"] < metrics(out)[0]["val/total"]
    assert load_vae(out / "best.safetensors").metadata["epoch"] >= 1


@pytest.mark.slow
def test_compiled_training_matches_eager_closely(blob_dataset, tmp_path):
    train_vae(tiny(blob_dataset, tmp_path / "eager", epochs=1))
    train_vae(tiny(blob_dataset, tmp_path / "compiled", epochs=1, compile=True))
    eager, compiled = metrics(tmp_path / "eager")[0], metrics(tmp_path / "compiled")[0]
    assert compiled["val/total"] == pytest.approx(eager["val/total"], rel=1e-3)
