"""GPU figures: the encoder at large batches and VAE training, each against a baseline in the same run.

- **Encoder**: :class:`~worldmodel.vae.encoder.LatentEncoder` on CUDA, uint8 numpy frames in
  (host-to-device copy included), float32 numpy latents out, fp32 and bf16, batch 64 to 4096.
- **VAE training**: the reference-design loop of :mod:`experiments.bench.train_vae` moved to
  the GPU (batch 32, fp32, contiguous NCHW, Adam) against :func:`worldmodel.vae.train.train_vae`
  on the GPU (uint8 batches pinned and copied ``non_blocking``, channels-last), fp32 and
  bf16 autocast, on the same synthetic dataset.

Without CUDA it writes nothing and keeps the last committed section.
``python -m experiments.bench.gpu``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from experiments.bench.latent_wrapper import FRAME_SPEC, encoder_rows, table
from experiments.bench.train_vae import Baseline, make_dataset, ours
from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.vae.checkpoint import save_vae
from worldmodel.vae.encoder import LatentEncoder
from worldmodel.vae.model import ConvVAE, VAEConfig

ENCODER_BATCHES = (64, 256, 1024, 4096)
TRAIN_STEPS = 300
BASELINE_SECONDS = 15.0


def encoder_section(tmp: Path) -> list[str]:
    path = tmp / "vae.safetensors"
    save_vae(path, ConvVAE(VAEConfig()), FRAME_SPEC)
    encoders = {
        "fp32": (LatentEncoder(path, device="cuda"), None),
        "bf16": (LatentEncoder(path, device="cuda", precision="bf16"), None),
    }
    return [
        "Encoder alone, uint8 numpy frames in (host-to-device copy included), float32 numpy latents out; "
        "frames/s (ratio to fp32):",
        "",
        *table(["batch", *encoders], encoder_rows(encoders, ENCODER_BATCHES)),
    ]


def training_section(tmp: Path) -> list[str]:
    ds = make_dataset(tmp / "data", episodes=60, steps=199)
    train_idx, _ = ds.split_by_episode(0.1, seed=0)
    baseline = Baseline(ds, train_idx, device="cuda")
    baseline.train_for(2.0)  # warm-up: cuDNN autotuning and allocator growth
    baseline.images, baseline.seconds = 0, 0.0
    baseline.train_for(BASELINE_SECONDS)
    quick = {"device": "cuda", "val_max_frames": 256, "stats_max_frames": 256}
    rows = [f"| baseline (reference design, batch 32, fp32) | {baseline.images_per_s:,.0f} | 1.00x | - |"]
    for name, overrides in (
        ("fp32, batch 128", {"precision": "fp32"}),
        ("bf16, batch 128", {"precision": "bf16"}),
        ("bf16, batch 512", {"precision": "bf16", "batch_size": 512}),
    ):
        result = ours(ds, tmp / name.replace(" ", "").replace(",", "_"), steps=TRAIN_STEPS, **quick, **overrides)
        rate = result["images_per_s"]
        rows.append(
            f"| worldmodel.vae.train, {name}, {TRAIN_STEPS} steps | {rate:,.0f} | {rate / baseline.images_per_s:.2f}x "
            f"| {100 * result['data_wait_share']:.1f}% |"
        )
    return [
        f"VAE training (World Models ConvVAE, 64x64x3, z=32) on the synthetic dataset of the train_vae section "
        f"({ds.num_frames} frames, memory-mapped); images/s count training steps only:",
        "",
        *table(["loop", "images/s", "ratio", "data wait"], rows),
    ]


def run() -> str:
    if not torch.cuda.is_available():
        return (
            "gpu: no CUDA device here; the gpu section of experiments/reports/benchmarks/README.md keeps its last run"
        )
    start = time.perf_counter()
    machine = describe_machine()
    with tempfile.TemporaryDirectory() as tmp:
        lines = [*encoder_section(Path(tmp)), "", *training_section(Path(tmp))]
    section = "\n".join(
        [
            "## gpu",
            "",
            f"Machine: {machine}.",
            "",
            *lines,
            "",
            f"Benchmark wall time: {time.perf_counter() - start:.0f} s.",
            "",
        ]
    )
    return write_section("gpu", section)


if __name__ == "__main__":
    print(run())
