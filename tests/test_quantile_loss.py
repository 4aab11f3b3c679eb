"""The compiled quantile Huber loss: the eager loss's values and gradients, and a fallback that keeps eager."""

from __future__ import annotations

import importlib

import pytest
import torch

pytest.importorskip("sb3_contrib")
from sb3_contrib.common.utils import quantile_huber_loss

from agents import quantile_loss
from agents.quantile_loss import QUANTILE_LOSS_USERS, use_compiled_quantile_loss


@pytest.fixture
def users(monkeypatch):
    """The modules calling the loss, restored to the eager loss after the test; nothing compiled before it."""
    modules = [importlib.import_module(name) for name in QUANTILE_LOSS_USERS.values()]
    for module in modules:
        monkeypatch.setattr(module, "quantile_huber_loss", quantile_huber_loss)
    monkeypatch.setattr(quantile_loss, "_COMPILED", {})
    return modules


@pytest.mark.parametrize(
    ("current", "target", "summed"),
    [((256, 2, 25), (256, 1, 46), False), ((32, 25), (32, 25), True)],
    ids=["tqc", "qrdqn"],
)
def test_tqc_and_qrdqn_get_a_compiled_loss_with_the_eager_values_and_gradients(users, current, target, summed):
    assert use_compiled_quantile_loss()
    compiled = users[0].quantile_huber_loss
    assert compiled is not quantile_huber_loss and users[1].quantile_huber_loss is compiled
    generator = torch.Generator().manual_seed(0)
    quantiles = torch.randn(current, generator=generator) * 3
    targets = torch.randn(target, generator=generator) * 3
    results = []
    for loss in (quantile_huber_loss, compiled):
        leaf = quantiles.clone().requires_grad_(True)
        value = loss(leaf, targets, sum_over_quantiles=summed)
        value.backward()
        results.append((value.detach(), leaf.grad))
    (eager_value, eager_grad), (compiled_value, compiled_grad) = results
    assert compiled_value.item() == pytest.approx(eager_value.item(), rel=1e-5)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-7)
    assert eager_grad.abs().sum() > 0


def test_a_loss_that_cannot_be_compiled_leaves_the_eager_one_and_says_why(users, monkeypatch):
    def broken(fn):
        def fails(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return fails

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="no C\\+\\+ compiler.*--no-compile-loss"):
        assert not use_compiled_quantile_loss()
    assert all(module.quantile_huber_loss is quantile_huber_loss for module in users)
    assert not use_compiled_quantile_loss(enabled=False)
