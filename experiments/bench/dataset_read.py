"""Reader throughput and memory: random batches of 256 frames (64x64x3) from datasets of 1x and 4x a size.

Each dataset is read in a fresh subprocess (so its anonymous RSS is the reader's own):
frames/s of ``FrameDataset.frames`` on random batches, and ``RssAnon`` before opening,
after opening and after reading. The baseline is the same gather from the 1x frames held
in RAM as one numpy array. A storage comparison justifies uncompressed ``.npy`` shards:
disk bytes per frame and read speed of one shard stored compressed (``np.savez_compressed``,
which must be decompressed whole before any random access) against memory-mapped ``.npy``.
Frames are real CarRacing-v3 frames (one Brownian episode, tiled).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from envs.collect import CollectConfig, run_episode
from envs.factory import make_env
from envs.policies import BrownianPolicy
from experiments.bench.stats import median_range
from experiments.pipeline.machine import describe_machine, write_section
from worldmodel.data import DatasetWriter

BASE_FRAMES = 10_000
BATCH = 256
SECONDS = 4.0
EPISODE_FRAMES = 500
ROUNDS = 3

READER = """
import json, sys, time
import numpy as np
from worldmodel.data import FrameDataset

def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

path, batch, seconds, in_ram = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
before = rss_anon()
t = time.perf_counter()
ds = FrameDataset.open(path, verify="none")
open_s = time.perf_counter() - t
opened = rss_anon()
rng = np.random.default_rng(0)
def gather(get):
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        get(rng.integers(0, ds.num_frames, batch))
        n += batch
    return n / (time.perf_counter() - start)
fps = gather(ds.frames)
out = {"frames": ds.num_frames, "open_s": open_s, "fps": fps, "rss_before": before, "rss_opened": opened,
       "rss_read": rss_anon()}
if in_ram:
    frames = ds.frames(np.arange(ds.num_frames))
    out["ram_fps"] = gather(lambda idx: frames[idx])
print(json.dumps(out))
"""


def source_frames(config: CollectConfig) -> np.ndarray:
    env = make_env(config.env_config)
    return run_episode(env, BrownianPolicy(env.action_space), config.env_config.frame_spec, 0, EPISODE_FRAMES - 1)[
        "frames"
    ]


def write_dataset(path: Path, frames: np.ndarray, total: int, config: CollectConfig) -> None:
    steps = len(frames) - 1
    with DatasetWriter(path, env_id=config.env_id, frame_spec=config.env_config.frame_spec) as writer:
        for i in range(total // len(frames)):
            writer.add_episode(frames, np.zeros((steps, 3), np.float32), np.zeros(steps), np.zeros(steps, bool),
                               np.zeros(steps, bool), seed=i, episode_index=i)  # fmt: skip


def compressed_comparison(frames: np.ndarray, tmp: Path) -> tuple[float, float, float, float]:
    """Bytes per frame and frames/s of whole-shard reads: ``.npy`` memory-mapped vs ``savez_compressed``."""
    shard = np.concatenate([frames] * 8)
    np.save(tmp / "s.npy", shard)
    np.savez_compressed(tmp / "s.npz", frames=shard)
    t = time.perf_counter()
    np.load(tmp / "s.npz")["frames"]
    npz_fps = len(shard) / (time.perf_counter() - t)
    t = time.perf_counter()
    np.array(np.load(tmp / "s.npy", mmap_mode="r"))
    npy_fps = len(shard) / (time.perf_counter() - t)
    size = lambda name: (tmp / name).stat().st_size / len(shard)  # noqa: E731
    return size("s.npy"), npy_fps, size("s.npz"), npz_fps


def run(rounds: int = ROUNDS) -> str:
    config = CollectConfig("CarRacing-v3", out=Path("unused"))
    frames = source_frames(config)
    reads: dict[int, list[dict]] = {1: [], 4: []}
    storage = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {scale: Path(tmp) / f"x{scale}" for scale in reads}
        for scale, path in paths.items():
            write_dataset(path, frames, scale * BASE_FRAMES, config)
        for _ in range(rounds):  # every read runs once per round, interleaved
            for scale, path in paths.items():
                argv = [sys.executable, "-c", READER, str(path), str(BATCH), str(SECONDS), "1" if scale == 1 else "0"]
                reads[scale].append(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout))
            storage.append(compressed_comparison(frames, Path(tmp)))

    def row(scale: int) -> str:
        rs = reads[scale]
        cells = [
            median_range([r["fps"] for r in rs]),
            median_range([r["fps"] / ram for r, ram in zip(rs, ram_fps, strict=True)], ".2f"),
            median_range([r["open_s"] * 1000 for r in rs]),
            median_range([r["rss_opened"] - r["rss_before"] for r in rs], ".1f"),
            median_range([r["rss_read"] - r["rss_before"] for r in rs], ".1f"),
        ]
        return f"| memory-mapped shards, {scale}x | {rs[0]['frames']} | " + " | ".join(cells) + " |"

    ram_fps = [r["ram_fps"] for r in reads[1]]
    rows = [f"| in RAM (baseline, 1x) | {reads[1][0]['frames']} | {median_range(ram_fps)} | 1.00 | - | - | - |",
            *(row(scale) for scale in reads)]  # fmt: skip
    npy_bpf, npz_bpf = storage[0][0], storage[0][2]  # sizes do not change between rounds
    npy_fps, npz_fps = median_range([st[1] for st in storage]), median_range([st[3] for st in storage])
    section = "\n".join(
        [
            "## dataset_read",
            "",
            f"Random batches of {BATCH} frames (64x64x3 uint8) gathered by `FrameDataset.frames` for {SECONDS:g} s "
            f"from datasets of {BASE_FRAMES:,} and {4 * BASE_FRAMES:,} frames (64 MiB shards, page cache warm: "
            "just written), each read in a fresh process. Baseline: the same gather from the 1x frames held in "
            "RAM as one array. RssAnon growth is the reader's own anonymous memory (memory-mapped pages are "
            "file cache, not counted); it must not grow with the dataset. Every read (and the storage "
            f"comparison below) runs once in each of {rounds} interleaved rounds: median (min-max) over rounds.",
            "",
            f"Machine: {describe_machine()}.",
            "",
            "| source | frames | frames/s | ratio to RAM | open ms | RssAnon after open (MiB) | "
            "RssAnon after reading (MiB) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Storage choice, one shard of {8 * EPISODE_FRAMES} real CarRacing-v3 frames: uncompressed `.npy` "
            f"{npy_bpf:,.0f} bytes/frame, read whole at {npy_fps} frames/s (and randomly, by memory map, "
            f"as above); `np.savez_compressed` {npz_bpf:,.0f} bytes/frame ({npz_bpf / npy_bpf:.0%} of the size) "
            f"but {npz_fps} frames/s to decompress, and a random batch needs whole shards decompressed "
            "in RAM. Uncompressed shards trade disk for reads that cost no CPU and no anonymous memory.",
            "",
        ]
    )
    return write_section("dataset_read", section)


if __name__ == "__main__":
    print(run())
