"""The local runner: statuses, limits, output caps and clean-up (hostile programs: test_sandbox_hostile.py)."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from pathlib import Path

from neuron_step.metrics import all_finite, final_metrics, loss_fell, parse_metrics
from neuron_step.pipes_client import NeuronPipesClient
from neuron_step.sandbox import CappedBuffer
from neuron_step.types import ProgramJob


def job(name: str, code: str, timeout_s: float | None = None) -> ProgramJob:
    return ProgramJob(paper_id=name, code=code, sha256=hashlib.sha256(code.encode()).hexdigest(), run_name=name,
                      timeout_s=timeout_s)


def run_all(tmp_path: Path, *jobs: ProgramJob) -> dict:
    client = NeuronPipesClient(slots=2, time_budget_s=5, timeout_s=30, work_root=str(tmp_path))
    return {r.paper_id: r for r in client.run_programs(None, list(jobs))}


def test_statuses(tmp_path: Path) -> None:
    runs = run_all(
        tmp_path,
        job("ok", 'print("METRICS: {\\"loss\\": 1.0}")\nprint("METRICS: {\\"loss\\": 0.5, \\"final\\": true}")'),
        job("crash", "raise RuntimeError('boom')"),
        job("silent", "print('done, no metrics')"),
        job("slow", "import time\ntime.sleep(60)", timeout_s=1.5),
        job("suicide", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
    )
    assert runs["ok"].status == "passed" and runs["ok"].final_metrics == {"loss": 0.5, "final": True}
    assert runs["crash"].status == "failed" and "RuntimeError: boom" in runs["crash"].error
    assert runs["silent"].status == "failed" and "no METRICS" in runs["silent"].error
    assert runs["slow"].status == "timeout" and runs["slow"].wall_s < 10
    assert runs["suicide"].status == "killed"


def test_environment_is_scrubbed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "do-not-leak")
    code = 'import os, json\nprint("METRICS: " + json.dumps({"n": len(os.environ), "leak": int(any("do-not-leak" in v for v in os.environ.values()))}))'
    run = run_all(tmp_path, job("env", code))["env"]
    assert run.status == "passed" and run.final_metrics["leak"] == 0


def test_children_left_behind_are_killed(tmp_path: Path) -> None:
    token = f"annapurna-orphan-{uuid.uuid4().hex}"
    code = ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {token!r}])\n"
            "print('METRICS: {\"x\": 1}')")
    run = run_all(tmp_path, job("orphan", code))["orphan"]
    assert run.status == "passed"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True).stdout.split()
        if not alive:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the program's child survived it: {alive}")


def test_output_is_capped_keeping_head_and_tail() -> None:
    buf = CappedBuffer(1000)
    buf.write(b"H" * 800)
    buf.write(b"x" * 100_000)
    buf.write(b"TAIL")
    value = buf.getvalue()
    assert value.startswith(b"H" * 750) and value.endswith(b"TAIL") and buf.dropped > 99_000
    assert b"bytes dropped by the output cap" in value


def test_metrics_protocol() -> None:
    out = 'noise\nMETRICS: {"loss": 2.0}\nMETRICS: not json\nMETRICS: [1]\nMETRICS: {"loss": 1.0, "acc": 0.5}\n'
    metrics = parse_metrics(out)
    assert metrics == [{"loss": 2.0}, {"loss": 1.0, "acc": 0.5}]
    assert final_metrics(metrics) == {"loss": 1.0, "acc": 0.5} and loss_fell(metrics) is True
    assert all_finite({"loss": 1.0}) and not all_finite({"loss": float("nan")}) and not all_finite({"name": "x"})
