from __future__ import annotations

import logging

import pytest
import torch

from vcl.device import resolve_device
from vcl.errors import DeviceUnavailableError, UsageError


def fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")


def no_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_without_accelerator_picks_cpu_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_cuda(monkeypatch, 0)
    no_mps(monkeypatch)
    logger = logging.getLogger("vcl")
    monkeypatch.setattr(logger, "propagate", True)
    with caplog.at_level(logging.INFO, logger="vcl"):
        assert resolve_device("auto") == torch.device("cpu")
    assert "auto picked cpu" in caplog.text


def test_auto_prefers_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("CUDA") == torch.device("cuda:0")


@pytest.mark.parametrize(("count", "spec"), [(0, "cuda"), (0, "cuda:0"), (1, "cuda:1")])
def test_absent_cuda_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, count: int, spec: str
) -> None:
    fake_cuda(monkeypatch, count)
    with pytest.raises(DeviceUnavailableError, match=f"{spec} is not available"):
        resolve_device(spec)


def test_absent_mps_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    no_mps(monkeypatch)
    with pytest.raises(DeviceUnavailableError, match="mps"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "", "tpu"])
def test_unknown_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        resolve_device(spec)
