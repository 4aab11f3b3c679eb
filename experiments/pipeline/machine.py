"""A one-line description of the machine and the date, and where benchmark sections are written.

>>> "cores" in describe_machine()
True
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import sys
from pathlib import Path

import torch

from worldmodel.common.device import cpu_has_fast_bf16

BENCHMARKS_REPORT = Path(__file__).resolve().parents[1] / "reports" / "benchmarks" / "README.md"
"""The benchmarks' report: one generated part per benchmark, the rest written by hand."""


def write_section(name: str, section: str) -> str:
    """Write a benchmark's markdown ``section`` as its part ``name`` of :data:`BENCHMARKS_REPORT` (the other parts
    and the prose around them are kept); return it."""
    from experiments.pipeline.markdown import write_markdown

    write_markdown(BENCHMARKS_REPORT, [section], part=name)
    return section


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def other_runnable() -> float:
    """Threads of other processes runnable right now (Linux), else the 1-minute load average.

    Unlike the load average, this does not lag (work paused with SIGSTOP for a benchmark no longer
    counts), and this process's own threads (e.g. OpenMP workers still spinning) do not count.
    """
    own = str(os.getpid())
    try:
        running = 0
        for task in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
            if task.parts[2] == own:
                continue
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                running += task.read_text().rsplit(")", 1)[1].split()[0] == "R"
        return float(running)
    except (OSError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def describe_machine() -> str:
    """CPU model and its bf16 support, core count, other runnable processes, torch version, GPU (if any) and
    today's date."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    bf16 = "native bf16 (avx512_bf16 or amx_bf16)" if cpu_has_fast_bf16() else "no native bf16 (emulated)"
    return (
        f"{cpu_model()} with {bf16}, {os.cpu_count()} cores ({other_runnable():.0f} other runnable threads at "
        f"start), {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}, {datetime.date.today().isoformat()}"
    )


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory (``ru_maxrss``) of this process and of its largest waited-for child, in MiB."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # KiB on Linux, bytes on macOS
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"self": round(self_mib, 1), "children": round(children_mib, 1)}
