"""Device and precision selection, decided in the main process only.

``precision="auto"`` resolves to bf16 on CUDA and on CPUs with native bf16, else fp32. The
environment variable ``WORLDMODEL_AUTO_PRECISION=fp32|bf16`` forces what ``auto`` resolves to
(bf16 is emulated, slower but correct, on CPUs without native support), so that both paths
can be tested on any machine (``make test-precision``).

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda if available, else mps, else cpu; an unavailable explicit device is an error."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available; use device='cpu' or 'auto'")
    return resolved


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512_BF16 or AMX-BF16).

    Without them bf16 autocast on the CPU is emulated and slower than fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def cpu_runs_bf16_lstm() -> bool:
    """Whether an LSTM runs under bf16 autocast on this CPU: oneDNN's bf16 LSTM needs AVX-512 and raises
    ("could not create a primitive descriptor") on CPUs without it, e.g. AMD EPYCs before Zen 4."""
    lstm = torch.nn.LSTM(1, 1)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 1))
    except RuntimeError:
        return False
    return True


AUTO_PRECISION_ENV = "WORLDMODEL_AUTO_PRECISION"
"""Environment variable that forces what ``precision="auto"`` resolves to: ``fp32`` or ``bf16``."""


def default_precision(device: torch.device) -> str:
    """What ``auto`` means on ``device``: ``$WORLDMODEL_AUTO_PRECISION`` when set, else ``bf16`` on CUDA
    with bf16 support and on CPUs with native bf16, else ``fp32``.

    >>> default_precision(torch.device("cpu")) in ("fp32", "bf16")
    True
    """
    forced = os.environ.get(AUTO_PRECISION_ENV, "").strip()
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ValueError(f"{AUTO_PRECISION_ENV} must be fp32 or bf16 (or unset), got {forced!r}")
        return forced
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (None for fp32); fp16 is CUDA-only."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError(f"precision 'fp16' needs a CUDA device, got {device}; use 'bf16' or 'fp32'")
        return torch.float16
    raise ValueError(f"precision must be one of fp32, bf16, fp16; got {precision!r}")
