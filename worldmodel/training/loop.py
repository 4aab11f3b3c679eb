"""The epoch loop every trainer here shares: train, validate, keep the best, commit, log, stop early.

A trainer subclasses :class:`Trainer` and fills in what is its own: :meth:`~Trainer.train_epoch`
(one pass, built from :meth:`~Trainer.check_step` and :meth:`~Trainer.optimizer_step`),
:meth:`~Trainer.validate`, and on rank 0 :meth:`~Trainer.save_epoch` (checkpoints, figures),
:meth:`~Trainer.epoch_message` and :meth:`~Trainer.finish` (the summary). The loop keeps the
run directory as :mod:`worldmodel.training.run` describes: ``config.json`` when it starts, then
every epoch the NaN guard, ``metrics.jsonl`` and ``resume.safetensors`` (the epoch's commit
point), and early stopping decided by all ranks together.

>>> import dataclasses, tempfile
>>> from worldmodel.training.distributed import init_distributed
>>> @dataclasses.dataclass(frozen=True)
... class Settings:
...     out: str; resume: bool = False; seed: int = 0; patience: int = 0; min_delta: float = 0.0
...     progress: bool = False; tensorboard: bool = False
...     lr: float = 0.1; weight_decay: float = 0.0; warmup_steps: int = 0; min_lr_fraction: float = 1.0
...     def to_dict(self): return dataclasses.asdict(self)
>>> class FitOne(Trainer):  # one step an epoch
...     resume_format = "demo"
...     def mse(self): return (self.model(torch.ones(4, 1)) - 1).pow(2).mean()  # y = 1 from x = 1
...     def train_epoch(self):
...         loss = self.mse()
...         self.check_step(("mse",), loss.detach().reshape(1))
...         self.optimizer_step(loss)
...         return {"mse": loss.detach().item()}
...     def validate(self):
...         mse = self.mse().item()
...         return Validation(mse, {"val/mse": mse})
...     def save_epoch(self, record, improved): return {}
...     def epoch_message(self, record): return f"epoch {record['epoch']}: mse {record['val/mse']:.3f}"
...     def finish(self): self.write_summary({})
>>> _ = torch.manual_seed(0)
>>> trainer = FitOne(Settings(tempfile.mkdtemp()), init_distributed("cpu"), RunCounters(), torch.nn.Linear(1, 1),
...                  num_epochs=5, total_steps=5, resolved={})
>>> trainer.fit().name, trainer.run.epoch, trainer.run.best_val < 0.01
('best.safetensors', 5, True)
"""

from __future__ import annotations

import dataclasses
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from worldmodel.common.atomic import write_json_atomic
from worldmodel.training.distributed import DistContext, any_rank, barrier
from worldmodel.training.run import (
    MetricsLog,
    ResumeState,
    RunCounters,
    ScheduleSettings,
    adamw_with_schedule,
    check_finite,
    save_resume_state,
)


class LoopSettings(ScheduleSettings, Protocol):
    """The fields of a trainer's config that the loop reads (besides the schedule's)."""

    out: str
    resume: bool
    seed: int
    patience: int
    min_delta: float
    progress: bool
    tensorboard: bool

    def to_dict(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Validation:
    """One epoch's held-out result, from :meth:`Trainer.validate`."""

    loss: float
    """The held-out loss: what the NaN guard checks, the best checkpoint and early stopping follow."""
    metrics: dict[str, Any]
    """Entries of the epoch's record (``val/...``), logged after the training metrics."""
    best_only: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Entries kept with the best epoch's metrics (for the summary) but not logged, e.g. per-dimension lists."""


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of an epoch's order, seeded by ``(seed, epoch)`` alone: the same on every rank and on resume.

    >>> int(epoch_rng(0, 3).integers(100)) == int(epoch_rng(0, 3).integers(100))
    True
    """
    return np.random.default_rng([seed, epoch])


class Trainer(ABC):
    """A training run's epoch loop; subclasses fill in the model-specific parts (see the module docstring).

    ``model`` is the module whose weights are saved (not wrapped in DDP or compiled), already on
    its device with ``resumed``'s weights and counters loaded; the loop builds AdamW and its
    schedule for ``total_steps`` and restores them from ``resumed``. Rank 0 writes ``config.json``
    (``config`` and its ``resolved`` settings) and opens the metrics log here. ``scaler`` (fp16)
    and ``grad_clip`` shape :meth:`optimizer_step`.
    """

    resume_format: ClassVar[str]
    """The ``format`` name of this trainer's resume files."""
    held_out: ClassVar[str] = "validation"
    """What messages call the held-out data."""

    def __init__(
        self,
        config: LoopSettings,
        ctx: DistContext,
        run: RunCounters,
        model: torch.nn.Module,
        *,
        num_epochs: int,
        total_steps: int,
        resolved: dict[str, Any],
        resumed: ResumeState | None = None,
        scaler: torch.amp.GradScaler | None = None,
        grad_clip: float = 0.0,
    ) -> None:
        self.config, self.ctx, self.run, self.model = config, ctx, run, model
        self.num_epochs, self.total_steps = num_epochs, total_steps
        self.out = Path(config.out)
        self.optimizer, self.scheduler = adamw_with_schedule(model.parameters(), config, total_steps)
        if resumed is not None:
            resumed.restore_optimizer(self.optimizer, self.scheduler)
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(ctx.device.type, enabled=False)
        self.grad_clip = grad_clip
        self.log: MetricsLog | None = None
        if ctx.is_main:
            write_json_atomic(self.out / "config.json", {**config.to_dict(), "resolved": resolved})
            resumed_epoch = run.epoch if config.resume else None
            self.log = MetricsLog(self.out, tensorboard=config.tensorboard, resumed_epoch=resumed_epoch,
                                  resumed_step=run.step)  # fmt: skip
        self.start_time = time.perf_counter() - run.wall_s

    # -- what a trainer fills in ------------------------------------------------------------------
    @abstractmethod
    def train_epoch(self) -> dict[str, float]:
        """One pass over this epoch's training data; the mean train metrics over all ranks."""

    @abstractmethod
    def validate(self) -> Validation:
        """The held-out loss and metrics, every rank taking its share."""

    @abstractmethod
    def save_epoch(self, record: dict[str, Any], improved: bool) -> dict[str, np.ndarray]:
        """Rank 0, after each epoch: write the last (and if ``improved`` the best) checkpoint; TensorBoard images."""

    @abstractmethod
    def epoch_message(self, record: dict[str, Any]) -> str:
        """The line printed after each epoch (`` *best*`` is added when it improved)."""

    @abstractmethod
    def finish(self) -> None:
        """Rank 0, after the last epoch: write the summary (see :meth:`write_summary`) and final figures."""

    def resume_state(self) -> dict[str, Any]:
        """JSON entries the resume state holds besides counters and schedule (checked on resume)."""
        return {}

    def resume_header(self) -> dict[str, str]:
        """String header entries of the resume file (e.g. the model config)."""
        return {}

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self) -> Path:
        """Run epochs until ``num_epochs``, ``total_steps`` or early stopping; the best checkpoint's path."""
        run, ctx, config = self.run, self.ctx, self.config
        while run.epoch < self.num_epochs and run.step < self.total_steps:
            train = self.train_epoch()
            val = self.validate()
            check_finite({"total": val.loss}, ctx, what=f"{self.held_out} loss", when=f"after epoch {run.epoch + 1}",
                         last=self.out / "last.safetensors")  # fmt: skip
            run.wall_s = time.perf_counter() - self.start_time
            improved = run.end_epoch(val.loss, config.min_delta)
            record = {
                "epoch": run.epoch,
                "step": run.step,
                "lr": self.scheduler.get_last_lr()[0],
                **{f"train/{k}": v for k, v in train.items()},
                **val.metrics,
                "best": improved,
                "wall_s": run.wall_s,
            }
            if improved:
                run.best_metrics = {**record, **val.best_only}
            if self.log is not None:
                self._commit(record, improved)
            barrier(ctx)
            if config.patience and any_rank(run.bad_epochs >= config.patience, ctx):
                self.message(f"early stopping: no {self.held_out} improvement for {run.bad_epochs} epochs")
                break
        if self.log is not None:
            self.finish()
            self.log.close()
        return self.out / "best.safetensors"

    def _commit(self, record: dict[str, Any], improved: bool) -> None:
        """Rank 0: checkpoints, the metrics record, then the resume state, the epoch's commit point."""
        assert self.log is not None
        self.log.write(record, self.save_epoch(record, improved))
        state = {"counters": self.run.counters(), "scheduler": self.scheduler.state_dict(), **self.resume_state()}
        # The commit point of the epoch: a kill before this line resumes from the previous epoch.
        save_resume_state(self.out / "resume.safetensors", self.model, self.optimizer, state,
                          format_name=self.resume_format, header=self.resume_header())  # fmt: skip
        self.message(self.epoch_message(record) + (" *best*" if improved else ""))

    # -- helpers for train_epoch and finish -------------------------------------------------------
    def progress_bar(self, total: int) -> Any:
        """A tqdm bar over this epoch's ``total`` steps (disabled off rank 0 and without ``progress``)."""
        from tqdm import tqdm

        return tqdm(total=total, desc=f"epoch {self.run.epoch + 1}", unit="step", leave=False,
                    disable=not (self.config.progress and self.ctx.is_main), file=sys.stderr)  # fmt: skip

    def step_generator(self) -> torch.Generator:
        """A generator seeded by ``(seed, step)``: the step's draws are the same on every rank and on resume."""
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.run.step)

    def check_step(self, names: tuple[str, ...], values: torch.Tensor) -> None:
        """The NaN guard of a training step, before it updates anything: ``values`` are its loss terms ``names``."""
        check_finite(dict(zip(names, values.tolist(), strict=True)), self.ctx, what="training loss",
                     when=f"at step {self.run.step} (epoch {self.run.epoch + 1})",
                     last=self.out / "last.safetensors")  # fmt: skip

    def optimizer_step(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss``, clip and take one (scaled) optimiser and schedule step, and count it."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.run.step += 1

    def write_summary(self, entries: dict[str, Any]) -> dict[str, Any]:
        """Write ``summary.json``: the best checkpoint, its epoch, the run's epochs and steps, then ``entries``."""
        summary = {
            "best_checkpoint": str(self.out / "best.safetensors"),
            "best_epoch": self.run.best_epoch + 1,
            "epochs": self.run.epoch,
            "steps": self.run.step,
            **entries,
        }
        write_json_atomic(self.out / "summary.json", summary)
        return summary

    def message(self, text: str) -> None:
        """Print ``text`` to stderr on rank 0."""
        if self.ctx.is_main:
            print(text, file=sys.stderr, flush=True)
