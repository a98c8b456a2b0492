"""The device helper shipped with every program: XLA on Trainium (torch-xla 2.9 API), else CUDA, else CPU."""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch


@pytest.fixture
def device_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.syspath_prepend(str(__import__("neuron_step.runtime", fromlist=["x"]).__path__[0]))
    monkeypatch.delenv("ANNAPURNA_DEVICE", raising=False)
    sys.modules.pop("annapurna_device", None)
    return importlib.import_module("annapurna_device")


def test_cpu_when_nothing_else_is_there(device_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_module.get_device() == torch.device("cpu")
    device_module.step_sync()  # a no-op without XLA


def test_cuda_when_available_unless_the_slot_says_cpu(device_module: types.ModuleType,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_module.get_device() == torch.device("cuda")
    monkeypatch.setenv("ANNAPURNA_DEVICE", "cpu")  # what a CPU slot sets
    assert device_module.get_device() == torch.device("cpu")


def test_xla_device_and_sync_on_a_neuron_host(device_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch_xla exists only on the Trainium host; this stand-in has exactly the 2.9 entry points the
    # helper may use (torch_xla.device(), torch_xla.sync()) and nothing of the deprecated xm API.
    calls: list[str] = []
    xla = types.ModuleType("torch_xla")
    xla.device = lambda: calls.append("device") or "xla:0"  # type: ignore[attr-defined]
    xla.sync = lambda: calls.append("sync")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_xla", xla)
    assert device_module.get_device() == "xla:0"
    device_module.step_sync()
    assert calls == ["device", "sync"]


def test_time_budget_from_the_environment(device_module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANNAPURNA_TIME_BUDGET_S", "42")
    assert device_module.time_budget_s() == 42.0
    monkeypatch.setenv("ANNAPURNA_TIME_BUDGET_S", "soon")
    assert device_module.time_budget_s() == 600.0
