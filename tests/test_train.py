import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_runs, interrupt_call, nan_loss_at_call, write_blob_dataset
from safetensors import safe_open

from worldmodel.cli import main as cli_main
from worldmodel.common.device import default_precision
from worldmodel.data import DatasetError
from worldmodel.training import loop as loop_mod
from worldmodel.vae import train as train_mod
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.train import (
    NonFiniteLossError,
    PosteriorCollapseWarning,
    TrainVAEConfig,
    TrainVAEError,
    train_vae,
)

# Tiny VAEs after a few steps carry little KL; test_posterior_collapse_warns checks the warning itself.
pytestmark = pytest.mark.filterwarnings("ignore::worldmodel.vae.train.PosteriorCollapseWarning")


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
    assert config["resolved"]["precision"] == default_precision(torch.device("cpu"))  # "auto" as resolved here


def test_resume_after_kills_equals_uninterrupted_run(blob_dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_vae(tiny(blob_dataset, straight))

    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:  # killed right after epoch 1 committed its state
        interrupt_call(patch, loop_mod, "save_resume_state", 1, after=True)
        with pytest.raises(KeyboardInterrupt):
            train_vae(tiny(blob_dataset, resumed))
    with monkeypatch.context() as patch:  # calls 1-4: epoch 2's steps, 5-8: epoch 3's (validation: not counted)
        interrupt_call(patch, train_mod, "vae_loss", 7)
        with pytest.raises(KeyboardInterrupt):
            train_vae(tiny(blob_dataset, resumed, resume=True))
    assert metrics(resumed)[-1]["epoch"] == 2

    train_vae(tiny(blob_dataset, resumed, resume=True))
    assert_same_runs(straight, resumed)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(blob_dataset, tmp_path, monkeypatch):
    # calls 1-4: the steps of epoch 1, 5: step 4 (epoch 2); validation calls worldmodel.vae.evaluate's vae_loss
    nan_loss_at_call(monkeypatch, train_mod, "vae_loss", 5, "total", "recon")
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
    from worldmodel.data import DatasetWriter
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


# ---------------------------------------------------------------------------------------------
# Refitting: --init, several datasets, --mix


@pytest.fixture(scope="module")
def second_blob_dataset(tmp_path_factory) -> str:
    """8 episodes of the blob (twice the frames of ``blob_dataset``), other seeds."""
    return str(write_blob_dataset(tmp_path_factory.mktemp("blob2") / "data", episodes=8, seed=100))


def test_init_starts_from_the_checkpoint_weights(full_run, blob_dataset, tmp_path):
    # With lr 0 AdamW leaves every weight alone, so the run's checkpoint is its starting point.
    out = tmp_path / "refit"
    train_vae(tiny(blob_dataset, out, epochs=1, lr=0.0, init=str(full_run / "last.safetensors")))
    init, refit = tensors(full_run / "last.safetensors"), tensors(out / "last.safetensors")
    assert init.keys() == refit.keys() and all(torch.equal(init[k], refit[k]) for k in init)
    summary = json.loads((out / "summary.json").read_text())
    [entry] = summary["datasets"]
    assert summary["init"] == str(full_run / "last.safetensors")
    assert entry["init_val_total"] == pytest.approx(metrics(full_run)[-1]["val/total"], rel=1e-5)
    assert entry["val_total"] == pytest.approx(entry["init_val_total"], rel=1e-5)
    scratch = tmp_path / "scratch"  # the same run without --init starts far worse
    train_vae(tiny(blob_dataset, scratch, epochs=1, lr=0.0))
    assert metrics(scratch)[0]["val/total"] > 1.5 * metrics(out)[0]["val/total"]


def test_init_must_match_the_architecture_and_frames(full_run, blob_dataset, toy_vae_path, tmp_path):
    with pytest.raises(TrainVAEError, match="--latent-dim 4"):
        train_vae(tiny(blob_dataset, tmp_path / "a", latent_dim=3, init=str(full_run / "best.safetensors")))
    with pytest.raises(TrainVAEError, match="frame spec, or drop --init"):
        train_vae(tiny(blob_dataset, tmp_path / "b", init=toy_vae_path))


def test_resume_wins_over_init(full_run, blob_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    train_vae(tiny(blob_dataset, out, epochs=1))
    first = tensors(out / "last.safetensors")
    train_vae(tiny(blob_dataset, out, epochs=1, lr=0.0, resume=True, init=str(full_run / "last.safetensors")))
    err = capsys.readouterr().err
    assert "--init" in err and "ignored: --resume continues" in err
    after = tensors(out / "last.safetensors")  # a finished run resumed: nothing to do, its own weights kept
    assert all(torch.equal(first[k], after[k]) for k in first)


def test_mix_sets_each_datasets_share_of_every_epoch(blob_dataset, second_blob_dataset, tmp_path, monkeypatch):
    drawn = []
    real_order = train_mod._VAETrainer._epoch_order

    def spy(trainer, count):
        perm = real_order(trainer, count)
        drawn.append(np.bincount(trainer.ds.source_of(perm[:count]), minlength=2))
        return perm

    monkeypatch.setattr(train_mod._VAETrainer, "_epoch_order", spy)
    out = tmp_path / "mixed"
    config = tiny(blob_dataset, out, epochs=2, more_data_dirs=(second_blob_dataset,), mix="0.75,0.25")
    train_vae(config)
    # 3 + 6 training episodes of 24 frames = 216 frames = 13 batches of 16; the small dataset is oversampled.
    for counts in drawn:
        assert counts.sum() == 13 * 16 and abs(counts[0] - 0.75 * 13 * 16) <= 1
    record = metrics(out)[-1]
    mixed = 0.75 * record["val/data0/total"] + 0.25 * record["val/data1/total"]
    assert record["val/total"] == pytest.approx(mixed)
    summary = json.loads((out / "summary.json").read_text())
    assert [d["data_dir"] for d in summary["datasets"]] == [blob_dataset, second_blob_dataset]
    assert [d["weight"] for d in summary["datasets"]] == [0.75, 0.25]
    assert [d["val_frames"] for d in summary["datasets"]] == [24, 48]
    drawn.clear()
    train_vae(dataclasses.replace(config, out=str(tmp_path / "by-size"), mix=None))  # default: each frame once
    assert all(abs(c[0] - 72 / 216 * 13 * 16) <= 16 for c in drawn)


def test_datasets_with_other_frame_specs_are_refused(blob_dataset, tmp_path):
    small = write_blob_dataset(tmp_path / "small", size=8)
    with pytest.raises(DatasetError, match=f"{blob_dataset} and {small}"):
        train_vae(tiny(blob_dataset, tmp_path / "run", more_data_dirs=(str(small),)))
    with pytest.raises(TrainVAEError, match="one non-negative share per dataset"):
        train_vae(tiny(blob_dataset, tmp_path / "run2", more_data_dirs=(blob_dataset,), mix="1"))


def test_cli_takes_several_datasets_and_init(full_run, blob_dataset, second_blob_dataset, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train-vae", blob_dataset, second_blob_dataset, "--mix", "0.5,0.5", "--init",
            str(full_run / "best.safetensors"), "--out", str(out), "--epochs", "1", "--batch-size", "16",
            "--latent-dim", "4", "--width-multiplier", "0.25", "--threads", "1", "--no-progress", "--no-figures",
            "--no-tensorboard", "--val-fraction", "0.25"]  # fmt: skip
    assert cli_main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data_dir"] == blob_dataset and config["more_data_dirs"] == [second_blob_dataset]
    assert config["mix"] == "0.5,0.5" and len(json.loads((out / "summary.json").read_text())["datasets"]) == 2
