"""TQC's and QR-DQN's quantile Huber loss compiled by ``torch.compile``: about 2.5x faster TQC gradient steps on CPU.

The loss compares every current quantile with every target quantile: batch x critics x
quantiles x target quantiles, 256 x 2 x 25 x 46 = 589k elements for the CarRacing TQC preset,
through a dozen elementwise operations and their gradients. Eager PyTorch makes a pass over
memory for each of them; on one CPU thread the loss and its backward took more than half of a
gradient step (about 20 ms), small as the [64, 64] networks are. Inductor fuses them into a few
loops: 8 ms a step in the same process (``python -m experiments.bench --only tqc`` measures it).

:func:`use_compiled_quantile_loss` points sb3-contrib's TQC and QR-DQN modules at the compiled
function, once per process, after compiling it on small inputs; where that fails (Inductor needs
a C++ compiler on CPU) they keep the eager loss and a warning says why. The compiled loss equals
the eager one up to float rounding, so a run's recipe does not change.

>>> use_compiled_quantile_loss(enabled=False)
False
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable

import torch

_COMPILED: dict[str, Callable[..., torch.Tensor]] = {}
"""The compiled loss, once :func:`use_compiled_quantile_loss` has built it in this process."""
QUANTILE_LOSS_USERS = {"tqc": "sb3_contrib.tqc.tqc", "qrdqn": "sb3_contrib.qrdqn.qrdqn"}
"""The algorithms whose modules call ``quantile_huber_loss`` by their own global name."""


def _probe(loss: Callable[..., torch.Tensor]) -> None:
    """Run ``loss`` forward and backward on small inputs of TQC's and QR-DQN's ranks (this compiles it)."""
    for current, target, summed in (((4, 2, 5), (4, 1, 8), False), ((4, 5), (4, 5), True)):
        quantiles = torch.randn(current, requires_grad=True)
        loss(quantiles, torch.randn(target), sum_over_quantiles=summed).backward()


def use_compiled_quantile_loss(enabled: bool = True) -> bool:
    """Make TQC and QR-DQN use the compiled quantile Huber loss; returns whether they do.

    ``enabled=False`` changes nothing (eager loss) and returns False. Compiles once per process
    (about 10 s cold, a second or two from Inductor's on-disk cache).
    """
    if not enabled:
        return False
    from sb3_contrib.common.utils import quantile_huber_loss

    if "loss" not in _COMPILED:
        compiled = torch.compile(quantile_huber_loss)
        try:
            _probe(compiled)
        except Exception as exc:
            warnings.warn(
                f"torch.compile could not build the quantile Huber loss ({type(exc).__name__}: {exc}); TQC and "
                "QR-DQN keep the eager loss, about 2.5x slower gradient steps on CPU. Inductor needs a C++ "
                "compiler (g++ or clang); pass --no-compile-loss to skip the attempt",
                stacklevel=2,
            )
            return False
        _COMPILED["loss"] = compiled
    set_quantile_loss(_COMPILED["loss"])
    return True


def set_quantile_loss(loss: Callable[..., torch.Tensor]) -> None:
    """Point every module of :data:`QUANTILE_LOSS_USERS` at ``loss``."""
    for name in QUANTILE_LOSS_USERS.values():
        importlib.import_module(name).quantile_huber_loss = loss
