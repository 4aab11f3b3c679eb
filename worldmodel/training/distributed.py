"""DistributedDataParallel plumbing: one process per device, started by ``torchrun``.

Training code calls :func:`init_distributed` once; without ``torchrun`` (no ``WORLD_SIZE``
in the environment, or ``WORLD_SIZE=1``) it returns a single-process context and every
collective below is a no-op, so the same code runs alone or scaled out.

>>> ctx = init_distributed("cpu")
>>> ctx.world_size, ctx.is_main
(1, True)
>>> float(all_reduce_sum(torch.tensor(2.0), ctx))
2.0
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from worldmodel.common.device import resolve_device

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly one-process) training job."""

    rank: int
    """Global rank, 0 .. world_size - 1."""
    world_size: int
    """Number of processes."""
    device: torch.device
    """The device this rank trains on (``cuda:<local_rank>`` under DDP on GPUs)."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and figures."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group set up by ``torchrun`` (gloo on CPU, nccl on CUDA), if any.

    ``device`` is resolved with :func:`worldmodel.common.device.resolve_device`; under DDP on CUDA
    each rank takes the GPU of its ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world_size <= 1:
        return DistContext(rank=0, world_size=1, device=resolved)
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"distributed training supports cpu and cuda devices, got {resolved}; pass --device cpu")
    if resolved.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=resolved)


def is_main_process() -> bool:
    """True unless ``torchrun`` started this process as a rank other than 0 (for what only one rank prints)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_on_ranks(train: Callable[[DistContext], T], device: str = "auto") -> T:
    """``train(ctx)`` in this process's place of a (possibly one-process) job; the group is left afterwards.

    Under ``torchrun`` every rank calls this; each returns once every rank has finished. A rank
    that raises leaves without the final barrier, so the others fail at their next collective
    instead of waiting for it.

    >>> run_on_ranks(lambda ctx: ctx.world_size, "cpu")
    1
    """
    ctx = init_distributed(device)
    ok = False
    try:
        result = train(ctx)
        ok = True
        return result
    finally:
        if ctx.distributed:
            if ok:
                dist.barrier()
            # DDP's reducer holds the process group; freed only by a late garbage collection, gloo's
            # worker threads could outlive destroy_process_group and abort the rank at interpreter exit
            gc.collect()
            dist.destroy_process_group()


def wrap_ddp(module: nn.Module, ctx: DistContext) -> nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` under DDP; itself in one process."""
    if not ctx.distributed:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (in place on a copy; ``tensor`` itself is unchanged)."""
    if not ctx.distributed:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_values(values: dict[K, float], ctx: DistContext) -> dict[K, float]:
    """Each of ``values`` summed over all ranks (in float64, one all-reduce).

    >>> all_reduce_values({"steps": 3.0, "hits": 1.0}, init_distributed("cpu"))
    {'steps': 3.0, 'hits': 1.0}
    """
    if not ctx.distributed:
        return values
    sums = all_reduce_sum(torch.tensor(list(values.values()), dtype=torch.float64, device=ctx.device), ctx)
    return dict(zip(values, sums.tolist(), strict=True))


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on at least one: a decision all ranks take together."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()
