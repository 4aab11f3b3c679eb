"""Speed beside CPU-bound neighbours: VAE training and batch encoding, before and after the OpenMP wait-policy fix.

Each measurement runs in a fresh process for a fixed time, alone or beside one or two busy
loops (``python -c "while True: pass"``, each taking a core), in two arms:

- **before**: torch is imported before :mod:`worldmodel`, so libgomp (torch's OpenMP runtime)
  starts with its defaults: threads that wait at the end of a parallel region spin for about
  300,000 iterations before they sleep.
- **after**: :mod:`worldmodel` is imported first, as every ``worldmodel`` command does, so its
  default ``OMP_WAIT_POLICY=PASSIVE`` is in place when libgomp starts (see ``worldmodel/__init__.py``).

Both arms start from the same environment with ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT``
removed, and the worker records the wait policy libgomp saw. Workloads, each with torch's
default threads (one per core):

- **VAE training**: the step of ``worldmodel train-vae`` on a CPU (ConvVAE 64x64x3, z=32, fp32,
  batch 64, channels-last, AdamW, :func:`~worldmodel.vae.model.vae_loss`) on batches gathered
  in the background by :class:`~worldmodel.training.prefetch.BatchPrefetcher` from a memory-mapped
  dataset; images/s.
- **batch encoding**: :meth:`LatentEncoder.encode <worldmodel.vae.encoder.LatentEncoder.encode>`
  (fp32) on batches of 256 frames, as for a dataset, and of 8, as one vector-env step of 8
  envs; frames/s.
- **latent PPO**: Stable-Baselines3 PPO (MlpPolicy, 8 envs in a ``DummyVecEnv``, 64 steps per
  env per update, 4 epochs of minibatches of 128) on the toy env ``worldmodel/DotTarget-v0``,
  its 64x64 frames encoded by :class:`~envs.latent.sb3_vec_env.VecLatentObservation`; env
  frames/s over whole collect-and-update cycles.

Rounds interleave every cell (arm x neighbours x workload) in an order that alternates, so a
change of load on a shared machine hits both sides of every ratio alike. Each run also records
the CPU that other processes took meanwhile (machine busy time less the worker's and the busy
loops'), so a run disturbed by other work shows in the records. The raw per-run figures go to
``experiments/reports/benchmarks/records/busy_neighbour.json``; the section is written from them.
Measure on a quiet machine (pause other work first); the default workloads take about 8 minutes.

``python -m experiments.bench.busy_neighbour [--rounds 3] [--seconds 5] [--workloads vae encode256 encode8 ppo]``
(``--from-records`` writes the section again from the records alone.)
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench.stats import median_range

# Light imports only at module level: a worker decides whether torch or worldmodel loads first.

WORKLOADS = ("vae", "encode256", "encode8", "ppo")
DEFAULT_WORKLOADS = ("vae", "encode256", "ppo")
LABELS = {
    "vae": "VAE training, batch 64 (images/s)",
    "encode256": "batch encoding, 256 frames (frames/s)",
    "encode8": "batch encoding, 8 frames (frames/s)",
    "ppo": "latent PPO, toy env, 8 envs (env frames/s)",
}
ARMS = ("before", "after")
NEIGHBOURS = (0, 1, 2)
BUSY_LOOP = "while True: pass"
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
GOAL = 0.40
"""Goal: beside one busy neighbour (one core of two taken), keep at least this share of the idle speed."""
DISTURBED_CORES = 0.25
"""A run during which other processes took more CPU than this counts as disturbed (reported)."""
RECORDS = Path(__file__).resolve().parents[1] / "reports" / "benchmarks" / "records" / "busy_neighbour.json"


# ---------------------------------------------------------------------------------------------
# Worker: one measurement in a fresh process


def _timed(step, seconds: float, warmup: int) -> tuple[int, float]:
    """Run ``step() -> items`` ``warmup`` times, then for ``seconds``: items done and seconds taken."""
    for _ in range(warmup):
        step()
    items, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        items += step()
    return items, elapsed


def measure_vae(data_dir: str, seconds: float, batch: int = 64) -> tuple[int, float]:
    import numpy as np
    import torch

    from worldmodel.data import FrameDataset
    from worldmodel.frames import frames_to_tensor
    from worldmodel.training.prefetch import BatchPrefetcher
    from worldmodel.vae.model import ConvVAE, VAEConfig, vae_loss

    ds = FrameDataset.open(data_dir)
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig()).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(ds.num_frames, batch, replace=False)) for _ in range(2000)]
    with BatchPrefetcher(ds, batches) as prefetcher:
        source = iter(prefetcher)

        def step() -> int:
            x = frames_to_tensor(next(source), ds.frame_spec, channels_last=True)  # (B, 3, 64, 64)
            x_hat, mu, logvar = vae(x)
            loss = vae_loss(x, x_hat, mu, logvar, vae.config)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
            return len(x)

        return _timed(step, seconds, warmup=2)


def measure_encode(vae_path: str, data_dir: str, seconds: float, batch: int) -> tuple[int, float]:
    from worldmodel.data import FrameDataset
    from worldmodel.vae.encoder import LatentEncoder

    frames = FrameDataset.open(data_dir).frames(list(range(batch)))
    encoder = LatentEncoder(vae_path, device="cpu", precision="fp32")

    def step() -> int:
        encoder.encode(frames)
        return batch

    return _timed(step, seconds, warmup=3)


def measure_ppo(vae_path: str, seconds: float, n_envs: int = 8, n_steps: int = 64) -> tuple[int, float]:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs  # noqa: F401  (registers the toy env ids)
    from envs.frame_wrapper import FrameSpecObservation
    from envs.latent.sb3_vec_env import VecLatentObservation
    from worldmodel.vae.checkpoint import load_vae
    from worldmodel.vae.encoder import LatentEncoder

    spec = load_vae(vae_path).frame_spec

    def make_env() -> gym.Env:
        return FrameSpecObservation(gym.make("worldmodel/DotTarget-v0"), spec)

    venv = VecLatentObservation(DummyVecEnv([make_env] * n_envs), LatentEncoder(vae_path, device="cpu"))
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=128, n_epochs=4, seed=0, device="cpu")
    cycle = n_envs * n_steps

    def step() -> int:
        model.learn(cycle, reset_num_timesteps=False)
        return cycle

    return _timed(step, seconds, warmup=1)


def worker(workload: str, arm: str, seconds: float, data_dir: str, vae_path: str) -> dict:
    """One measurement in this (fresh) process: ``{"rate", "items", "seconds", "wait_policy", "threads"}``."""
    # The order of these two imports is the arm: libgomp reads its settings once, when torch loads it.
    if arm == "before":
        seen = os.environ.get("OMP_WAIT_POLICY")
        importlib.import_module("torch")
        importlib.import_module("worldmodel")
    else:
        importlib.import_module("worldmodel")
        seen = os.environ.get("OMP_WAIT_POLICY")
        importlib.import_module("torch")
    import torch

    if workload == "vae":
        items, elapsed = measure_vae(data_dir, seconds)
    elif workload.startswith("encode"):
        items, elapsed = measure_encode(vae_path, data_dir, seconds, int(workload.removeprefix("encode")))
    elif workload == "ppo":
        items, elapsed = measure_ppo(vae_path, seconds)
    else:
        raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")
    return {
        "rate": items / elapsed,
        "items": items,
        "seconds": elapsed,
        "wait_policy": seen,
        "spincount": os.environ.get("GOMP_SPINCOUNT"),
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------
# Orchestration


def _prepare(tmp: Path) -> tuple[Path, Path]:
    """A synthetic CarRacing-like dataset (2,000 frames) and an untrained VAE checkpoint in ``tmp``."""
    from experiments.bench.train_vae import make_dataset
    from worldmodel.frames import FrameSpec
    from worldmodel.vae.checkpoint import save_vae
    from worldmodel.vae.model import ConvVAE, VAEConfig

    make_dataset(tmp / "data", episodes=10, steps=199)
    save_vae(tmp / "vae.safetensors", ConvVAE(VAEConfig()), FrameSpec())
    return tmp / "data", tmp / "vae.safetensors"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return env


def _machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, interrupts) since boot."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _our_cpu_s(busy: list[subprocess.Popen]) -> float:
    """CPU seconds of this process's waited-for children (the workers) and of the running busy loops."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + sum(_process_cpu_s(p.pid) for p in busy)


def _measure(workload: str, arm: str, seconds: float, data_dir: Path, vae_path: Path, busy: list) -> dict:
    """One fresh worker process; adds ``other_cores``: the CPU that processes other than the worker and the
    busy loops took meanwhile (other work on a shared machine), in cores."""
    cmd = [sys.executable, "-m", "experiments.bench.busy_neighbour", "--worker", workload, "--arm", arm,
           "--seconds", str(seconds), "--data", str(data_dir), "--vae", str(vae_path)]  # fmt: skip
    env = _child_env() | {"OMP_DISPLAY_ENV": "verbose"}  # libgomp prints the spin count it uses, once, at start
    ours, machine, start = _our_cpu_s(busy), _machine_cpu_s(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    wall, machine, ours = time.perf_counter() - start, _machine_cpu_s() - machine, _our_cpu_s(busy) - ours
    if done.returncode != 0:
        raise RuntimeError(f"worker {workload}/{arm} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    spin = re.search(r"GOMP_SPINCOUNT = '(\w+)'", done.stderr)
    return {
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "libgomp_spincount": spin.group(1) if spin else None,
        "other_cores": max(0.0, (machine - ours) / wall),
    }


def _start_busy(count: int) -> list[subprocess.Popen]:
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    time.sleep(0.5)  # let them get going
    return busy


def _stop_busy(busy: list[subprocess.Popen]) -> None:
    for process in busy:
        process.terminate()
    for process in busy:
        process.wait()


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def machine_record() -> dict:
    """CPU model, cores, avx512_bf16, load, versions and date, for the records."""
    import torch

    lscpu = _lscpu()
    flags = lscpu.get("Flags", "").split()
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()
    return {
        "cpu": lscpu.get("Model name", platform.processor() or "unknown CPU"),
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "loadavg_1m": float(loadavg[0]),
        "runnable_at_start": max(0, int(loadavg[3].split("/")[0]) - 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def measure_all(rounds: int, seconds: float, workloads: tuple[str, ...]) -> dict:
    """Every cell ``rounds`` times, interleaved; returns the records (machine, settings, runs)."""
    machine = machine_record()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir, vae_path = _prepare(Path(tmp))
        for r in range(rounds):
            for neighbours in NEIGHBOURS if r % 2 == 0 else NEIGHBOURS[::-1]:
                busy = _start_busy(neighbours)
                try:
                    for i, workload in enumerate(workloads):
                        arms = ARMS if (r + i + neighbours) % 2 == 0 else ARMS[::-1]
                        for arm in arms:
                            result = _measure(workload, arm, seconds, data_dir, vae_path, busy)
                            runs.append({"round": r, "neighbours": neighbours, "workload": workload, "arm": arm,
                                         **result})  # fmt: skip
                            print(f"round {r} busy {neighbours} {workload:9s} {arm:6s} {result['rate']:8.0f}/s "
                                  f"(libgomp spin count {result['libgomp_spincount']}, "
                                  f"other work {result['other_cores']:.2f} cores)", flush=True)  # fmt: skip
                finally:
                    _stop_busy(busy)
    with open("/proc/loadavg") as f:
        machine["loadavg_1m_end"] = float(f.read().split()[0])
    settings = {"rounds": rounds, "seconds": seconds, "workloads": list(workloads), "neighbours": list(NEIGHBOURS)}
    return {"machine": machine, "settings": settings, "runs": runs}


# ---------------------------------------------------------------------------------------------
# Report


def _cell(records: dict, workload: str, arm: str, neighbours: int) -> list[float]:
    key = (workload, arm, neighbours)
    return [r["rate"] for r in records["runs"] if (r["workload"], r["arm"], r["neighbours"]) == key]


def section(records: dict) -> str:
    """The markdown section, from the records alone."""
    m, s = records["machine"], records["settings"]
    bf16 = "with avx512_bf16" if m["avx512_bf16"] else "no avx512_bf16"
    lines = [
        "## busy_neighbour",
        "",
        'Speed beside CPU-bound neighbours (`python -c "while True: pass"`, one per taken core), before and after '
        "the OpenMP wait-policy fix (`OMP_WAIT_POLICY=PASSIVE`, set by `import worldmodel` before torch loads). "
        "Before: torch imported first, libgomp's default (a waiting thread spins ~300,000 iterations before it "
        "sleeps); after: `worldmodel` imported first, as in every `worldmodel` command. Each run is a fresh process "
        f"measuring for {s['seconds']:g} s after a warm-up, torch's default threads (one per core); cells are "
        f"interleaved over {s['rounds']} rounds. Median (min-max) of the {s['rounds']} runs; % of idle is the ratio "
        "of medians to the same arm alone. Workloads: the CPU step of `worldmodel train-vae` (ConvVAE 64x64x3, z=32, "
        "fp32, batch 64, channels-last, AdamW, background batch gathering from a memory-mapped dataset); "
        "`LatentEncoder.encode` (fp32) on a batch of frames; SB3 PPO (MlpPolicy, 8 toy envs "
        "`worldmodel/DotTarget-v0` in a `DummyVecEnv` behind `VecLatentObservation`, 64 steps per env per "
        "update, 4 epochs), env frames/s over whole collect-and-update cycles.",
        "",
        f"Machine: {m['cpu']} ({bf16}), {m['cores']} cores, torch {m['torch']}, Python {m['python']}, {m['date']}. "
        f"Other runnable processes at the start: {m['runnable_at_start']}; 1-minute load average "
        f"{m['loadavg_1m']:.1f} at the start and {m.get('loadavg_1m_end', float('nan')):.1f} at the end (it lags "
        "by minutes: the other work measured during each run is below)"
        + (f"; {records['note']}" if records.get("note") else "")
        + ". Raw runs: [records/busy_neighbour.json](records/busy_neighbour.json).",
        "",
        "| workload | arm | idle | 1 busy | % of idle | 2 busy | % of idle |",
        "|---|---|---|---|---|---|---|",
    ]
    median = {(w, a, n): statistics.median(_cell(records, w, a, n)) for w in s["workloads"] for a in ARMS
              for n in NEIGHBOURS}  # fmt: skip
    for w in s["workloads"]:
        for a in ARMS:
            idle = median[w, a, 0]
            alone, one, two = (median_range(_cell(records, w, a, n)) for n in NEIGHBOURS)
            lines.append(f"| {LABELS[w]} | {a} | {alone} | {one} | {100 * median[w, a, 1] / idle:.0f}% | {two} "
                         f"| {100 * median[w, a, 2] / idle:.0f}% |")  # fmt: skip
    lines += ["", "After/before, ratio of medians:", "", "| workload | idle | 1 busy | 2 busy |", "|---|---|---|---|"]
    for w in s["workloads"]:
        ratios = " | ".join(f"{median[w, 'after', n] / median[w, 'before', n]:.2f}x" for n in NEIGHBOURS)
        lines.append(f"| {LABELS[w]} | {ratios} |")
    kept = {w: median[w, "after", 1] / median[w, "after", 0] for w in s["workloads"]}
    other = [r["other_cores"] for r in records["runs"]]
    disturbed = sum(o > DISTURBED_CORES for o in other)
    lines += [
        "",
        f"Other work during the runs (CPU taken by processes other than the worker and the busy loops): median "
        f"{statistics.median(other):.2f} cores, at most {max(other):.2f}; {disturbed} of {len(other)} runs above "
        f"{DISTURBED_CORES} cores" + (" (disturbed runs: their cells are less certain)." if disturbed else "."),
        "",
        f"Goal: with one core of two taken, keep >= {100 * GOAL:.0f}% of the idle speed: "
        f"{'met' if all(v >= GOAL for v in kept.values()) else 'NOT met'} after the fix ("
        + ", ".join(f"{w} {100 * v:.0f}%" for w, v in kept.items())
        + "); before it: "
        + ", ".join(f"{w} {100 * median[w, 'before', 1] / median[w, 'before', 0]:.0f}%" for w in s["workloads"])
        + ". And the idle speed within a few percent of before: "
        + ", ".join(f"{w} {median[w, 'after', 0] / median[w, 'before', 0]:.2f}x" for w in s["workloads"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def run(rounds: int = 3, seconds: float = 5.0, workloads: tuple[str, ...] = DEFAULT_WORKLOADS, note: str = "") -> str:
    """Measure, write the records and the section; ``note`` (e.g. what was paused for the run) goes into both."""
    from experiments.pipeline.machine import write_section

    records = measure_all(rounds, seconds, workloads) | ({"note": note} if note else {})
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    RECORDS.write_text(json.dumps(records, indent=1) + "\n")
    return write_section("busy_neighbour", section(records))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per cell (default 3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(DEFAULT_WORKLOADS),
                        help=f"what to measure (default: {' '.join(DEFAULT_WORKLOADS)})")  # fmt: skip
    parser.add_argument("--note", default="", help="a note on the machine's state for the report")
    parser.add_argument("--from-records", action="store_true", help="write the section from the records, run nothing")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--vae", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.arm, args.seconds, args.data, args.vae)))
    elif args.from_records:
        from experiments.pipeline.machine import write_section

        print(write_section("busy_neighbour", section(json.loads(RECORDS.read_text()))))
    else:
        print(run(args.rounds, args.seconds, tuple(args.workloads), args.note))
