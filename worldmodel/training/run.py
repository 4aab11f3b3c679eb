"""What every trainer here shares: run directories, exact resume state, metrics, the schedule, the NaN guard.

``worldmodel train-vae`` (:mod:`worldmodel.vae.train`) and ``worldmodel train-memory``
(:mod:`worldmodel.memory.train`) hold only their model-specific parts of the epoch loop
(:mod:`worldmodel.training.loop`), which keeps a run directory this way:

- ``resume.safetensors``: weights, AdamW moments and, as JSON in its header, counters and
  scheduler state (no pickle), written atomically at the end of each epoch: the commit
  point from which ``--resume`` continues exactly, also after ``kill -9``;
- ``metrics.jsonl``: one record per epoch (records after the resume point are dropped on
  resume), mirrored to TensorBoard under ``tb/``;
- ``best.safetensors`` / ``last.safetensors``: the model checkpoints, written atomically.

>>> [round(lr_factor(s, 10, 2, 0.1), 3) for s in (0, 1, 2, 10)]
[0.5, 1.0, 1.0, 0.1]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from worldmodel.common.atomic import atomic_path, writing
from worldmodel.common.errors import UserError
from worldmodel.training.distributed import DistContext, any_rank

RESUME_VERSION = 1


class TrainError(UserError, ValueError):
    """A training request that cannot run (bad data, size mismatch, unusable run directory, ...)."""


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or Inf; the run stopped and kept its last good checkpoint."""


def check_finite(terms: dict[str, float], ctx: DistContext, *, what: str, when: str, last: Path) -> None:
    """The NaN guard: raise :class:`NonFiniteLossError` (on every rank) if any of ``terms`` is NaN or Inf on any rank.

    >>> from worldmodel.training.distributed import init_distributed
    >>> check_finite({"nll": float("nan")}, init_distributed("cpu"), what="training loss", when="at step 3",
    ...              last=Path("run/last.safetensors"))
    Traceback (most recent call last):
    ...
    worldmodel.training.run.NonFiniteLossError: the training loss became non-finite at step 3: nll nan; stopped \
without updating. The last good checkpoint is run/last.safetensors. Lower --lr or use --precision fp32, then --resume
    """
    if any_rank(not all(math.isfinite(v) for v in terms.values()), ctx):
        detail = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
        raise NonFiniteLossError(
            f"the {what} became non-finite {when}: {detail}; stopped without updating. The last good checkpoint is "
            f"{last}. Lower --lr or use --precision fp32, then --resume"
        )


def check_run_dir(
    out: str | os.PathLike, resume: bool, error: type[TrainError] = TrainError
) -> tuple[Path, Path | None]:
    """Check ``out``: holding no run unless ``resume``, holding one if ``resume``. Creates nothing (see
    :func:`make_run_dir`), so a request refused later leaves no directory behind.

    Returns ``out`` and the resume state to continue from: None to start from the beginning, also under
    ``resume`` when the run stopped before committing its first epoch (``last.safetensors`` and no
    ``resume.safetensors``: killed or out of space in between), whose files are then written again.
    """
    out = Path(out)
    state, last = out / "resume.safetensors", out / "last.safetensors"
    if state.exists():
        if not resume:
            raise error(f"{out} already holds a training run; pass --resume to continue it, or choose another --out")
        return out, state
    if not resume:
        if last.exists():
            raise error(f"{out} holds a training run that stopped before its first epoch was committed; pass "
                        "--resume to train it from the beginning, or choose another --out")  # fmt: skip
        return out, None
    if not last.exists():
        raise error(f"--resume: {out} holds no resume.safetensors to continue from; drop --resume")
    print(f"--resume: {out} stopped before its first epoch was committed (no resume.safetensors); training from "
          "the beginning", file=sys.stderr, flush=True)  # fmt: skip
    return out, None


def make_run_dir(out: Path, error: type[TrainError] = TrainError) -> None:
    """Create the run directory once the inputs are known good, and check that it is writable."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise error(f"cannot write to the run directory {out}: {exc}; choose a writable --out") from exc


def spread(indices: np.ndarray, max_count: int) -> np.ndarray:
    """At most ``max_count`` of ``indices``, evenly spread (all of them when ``max_count`` is 0).

    >>> spread(np.arange(10), 3).tolist()
    [0, 4, 9]
    """
    if max_count <= 0 or len(indices) <= max_count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, max_count).round().astype(np.int64)]


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_fraction: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_fraction`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_fraction + (1.0 - min_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ScheduleSettings(Protocol):
    """The optimiser fields a trainer's config has."""

    lr: float
    weight_decay: float
    warmup_steps: int
    min_lr_fraction: float


def adamw_with_schedule(
    params: Any, settings: ScheduleSettings, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its :func:`lr_factor` schedule (warm-up capped at a tenth of the run)."""
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = min(settings.warmup_steps, total_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, settings.min_lr_fraction)
    )
    return optimizer, scheduler


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` on ``device``; a disabled context for None (fp32)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


# ---------------------------------------------------------------------------------------------
# Counters and resume state (safetensors + JSON, no pickle)


@dataclass
class RunCounters:
    """The progress of a run that resume restores: counters and the early-stopping state."""

    epoch: int = 0
    step: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    wall_s: float = 0.0
    best_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    def counters(self) -> dict[str, Any]:
        """Every field as JSON-friendly values (subclasses' fields included)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.settings()}

    def settings(self) -> tuple[str, ...]:
        """Fields that are resolved settings of the run, not progress (not saved)."""
        return ()

    def restore(self, counters: dict[str, Any]) -> None:
        for key, value in counters.items():
            setattr(self, key, value)

    def end_epoch(self, val: float, min_delta: float) -> bool:
        """Count an epoch with validation loss ``val``; True when it improved on the best by more than ``min_delta``."""
        self.epoch += 1
        if val < self.best_val - min_delta:
            self.best_val, self.best_epoch, self.bad_epochs = val, self.epoch - 1, 0
            return True
        self.bad_epochs += 1
        return False


def save_resume_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    format_name: str,
    header: dict[str, str],
) -> None:
    """Write weights, AdamW moments, the JSON ``state`` and string ``header`` entries in one atomic file."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, param_state in opt["state"].items():
        for key, value in param_state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    full_header = {
        "format": format_name,
        "format_version": str(RESUME_VERSION),
        **header,
        "param_groups": json.dumps(opt["param_groups"]),
        "state": json.dumps(state),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=full_header)


@dataclass(frozen=True)
class ResumeState:
    """What a resume file holds, read by :func:`load_resume_state`."""

    model: dict[str, torch.Tensor]
    """The model's state dict."""
    optimizer: dict[str, Any]
    """The optimizer's state dict."""
    header: dict[str, str]
    """The string header entries (e.g. the model config as JSON)."""
    state: dict[str, Any]
    """The JSON state: ``counters``, ``scheduler`` and what the trainer added."""

    def restore_model(self, model: torch.nn.Module, run: RunCounters) -> None:
        """Load the weights into ``model`` and the counters into ``run`` (check the state matches first)."""
        model.load_state_dict(self.model)
        run.restore(self.state["counters"])

    def restore_optimizer(
        self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
    ) -> None:
        """Load the AdamW moments and the schedule's position."""
        optimizer.load_state_dict(self.optimizer)
        scheduler.load_state_dict(self.state["scheduler"])


def load_resume_state(path: Path, *, format_name: str, error: type[TrainError] = TrainError) -> ResumeState:
    """Read a resume file written by :func:`save_resume_state` with the same ``format_name``."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise error(f"cannot read the resume state {path}: {exc}; start a new run in another --out") from exc
    if header.get("format") != format_name or header.get("format_version") != str(RESUME_VERSION):
        raise error(f"{path} is not a v{RESUME_VERSION} {format_name} file; start a new run instead")
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            opt_state.setdefault(int(index), {})[key] = value
    optimizer = {"state": opt_state, "param_groups": json.loads(header["param_groups"])}
    return ResumeState(model, optimizer, header, json.loads(header["state"]))


# ---------------------------------------------------------------------------------------------
# Metrics


class MetricsLog:
    """``metrics.jsonl`` and TensorBoard scalars of a run (rank 0 only).

    On resume, records of epochs after ``resumed_epoch`` are dropped and TensorBoard
    events after ``resumed_step`` purged, so a resumed run's logs equal an uninterrupted one's.
    """

    def __init__(self, out: Path, *, tensorboard: bool, resumed_epoch: int | None, resumed_step: int) -> None:
        self.path = out / "metrics.jsonl"
        if resumed_epoch is not None and self.path.exists():
            lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["epoch"] <= resumed_epoch]
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in kept))
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=resumed_step if resumed_epoch is not None else None)

    def write(self, record: dict[str, Any], images: dict[str, np.ndarray] | None = None) -> None:
        """Append ``record`` (needs ``epoch`` and ``step``); its numbers and HWC uint8 ``images`` go to TensorBoard."""
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with writing(self.path), open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except BaseException:  # no half-written line for --resume to choke on: cut it back to whole records
            with contextlib.suppress(OSError):
                os.truncate(self.path, size)
            raise
        if self.tb is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                self.tb.add_scalar(key, value, record["step"])
        for name, image in (images or {}).items():
            self.tb.add_image(name, image, record["step"], dataformats="HWC")
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
