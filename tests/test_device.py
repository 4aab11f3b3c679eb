"""Device and precision selection: what ``auto`` resolves to, and forcing it through the environment."""

import pytest
import torch

from worldmodel.common import device as device_mod
from worldmodel.common.device import AUTO_PRECISION_ENV, autocast_dtype, default_precision, resolve_device

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_native_bf16_support(monkeypatch, native):
    monkeypatch.delenv(AUTO_PRECISION_ENV, raising=False)
    monkeypatch.setattr(device_mod, "cpu_has_fast_bf16", lambda: native)
    assert default_precision(CPU) == ("bf16" if native else "fp32")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_environment_variable_forces_auto_either_way(monkeypatch, native, forced):
    monkeypatch.setattr(device_mod, "cpu_has_fast_bf16", lambda: native)
    monkeypatch.setenv(AUTO_PRECISION_ENV, forced)
    assert default_precision(CPU) == forced


def test_bad_forced_precision_names_the_variable(monkeypatch):
    monkeypatch.setenv(AUTO_PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match=f"{AUTO_PRECISION_ENV} must be fp32 or bf16"):
        default_precision(CPU)


def test_autocast_dtypes():
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("fp16", CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_missing_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
