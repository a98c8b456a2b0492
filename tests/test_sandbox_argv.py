"""The bubblewrap command line (pure): what is hidden, what is bound back, what the program gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from neuron_step import sandbox
from neuron_step.sandbox import SandboxLimits, bwrap_argv


def pairs(cmd: list[str], option: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == option]


def test_secrets_hidden_interpreter_and_job_bound_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "accelerator_devices", lambda: [])
    job = tmp_path / "jobs" / "paper-abc"
    job.mkdir(parents=True)
    cache = tmp_path / "datasets"
    cache.mkdir()
    cmd, protections = bwrap_argv([sys.executable, "launch.py"], job, {"DAGSTER_PIPES_CONTEXT": "x"},
                                  SandboxLimits(tmp_size_bytes=1234), read_only=[cache], as_root=True,
                                  inner=["setpriv", "--"])
    assert cmd[:3] == ["bwrap", "--ro-bind", "/"] and "--clearenv" in cmd
    hidden = pairs(cmd, "--tmpfs")
    assert "/tmp" in hidden and all(h in hidden for h in ("/root", "/home") if Path(h).is_dir())
    assert pairs(cmd, "--size") == ["1234"]  # the private /tmp is bounded
    binds = pairs(cmd, "--bind")
    assert str(job) in binds and len(binds) == 1  # the job folder is the one writable place
    ro = pairs(cmd, "--ro-bind")
    real_prefix = str(Path(os.path.realpath(sys.executable)).parent.parent)
    if real_prefix.startswith(("/root", "/home", "/tmp")):
        assert real_prefix in ro  # the interpreter stays visible where it lives
    assert str(cache) in ro
    # Mount points bwrap creates for bind-backs are made crossable by the sandbox user.
    assert all(cmd[i - 2: i] == ["--perms", "0755"] for i, a in enumerate(cmd) if a == "--dir")
    assert cmd[cmd.index("--setenv") + 1: cmd.index("--setenv") + 3] == ["DAGSTER_PIPES_CONTEXT", "x"]
    assert cmd[-4:] == ["setpriv", "--", sys.executable, "launch.py"]
    assert {"--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session"} <= set(cmd)
    assert "--unshare-user" not in cmd and "--unshare-all" not in cmd  # as root: no user namespace
    assert "read-only-root" in protections and "network-namespace" in protections


def test_unprivileged_uses_all_namespaces_and_devices_are_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "accelerator_devices", lambda: ["/dev/neuron0", "/dev/neuron1"])
    job = tmp_path / "job"
    job.mkdir()
    cmd, protections = bwrap_argv([sys.executable, "launch.py"], job, {}, SandboxLimits())
    assert "--unshare-all" in cmd and "--cap-add" not in cmd
    assert pairs(cmd, "--dev-bind") == ["/dev/neuron0", "/dev/neuron1"]
    assert "devices:/dev/neuron0,/dev/neuron1" in protections
