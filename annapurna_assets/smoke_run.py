"""A short local smoke run of a generated program before it is accepted (and queued for Trainium).

A program that crashes in its first seconds (a wrong shape, a missing attribute, a typo pyflakes
cannot see) would otherwise cost a Trainium slot and a compile before failing. The smoke run uses
the project's own sandboxed runner on this machine (its CPU, or its GPU if it has one), with a small time budget, and
sorts the outcome into three kinds:

- `passed`: it ran and printed METRICS (or exited 0 within the budget);
- `failed`: it crashed; the error tail goes back to Claude for a fixed version;
- `inconclusive`: something outside the program stopped it here (the dataset is not staged on this
  machine, the run outgrew the smoke limit on a slow CPU): the program is kept, not blamed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from neuron_step.metrics import parse_metrics
from neuron_step.pipes_client import detect_device, prepare_job_dir, slot_env, status_of
from neuron_step.sandbox import SandboxLimits, clean_env, run_sandboxed
from neuron_step.types import ProgramJob, ProgramRun

SmokeStatus = Literal["passed", "failed", "inconclusive"]
TAIL_LINES = 40
TAIL_CHARS = 4000
# Raised by the shipped dataset_loader when a standard dataset is not staged on the host.
NOT_THE_PROGRAMS_FAULT = ("DatasetUnavailable",)
SMOKE_MEMORY_BYTES = 8 * 1024**3
SMOKE_UID_BASE = 63000
SMOKE_UID_SPAN = 2000


@dataclass(frozen=True)
class SmokeResult:
    status: SmokeStatus
    detail: str
    error_tail: str = ""
    wall_s: float = 0.0

    def as_meta(self) -> dict[str, object]:
        return {"status": self.status, "detail": self.detail, "wall_s": round(self.wall_s, 2)}


def output_tail(stdout: bytes, stderr: bytes) -> str:
    """The last lines of both streams, stderr last (where the traceback is)."""
    out = stdout.decode("utf-8", "replace").strip().splitlines()[-8:]
    err = stderr.decode("utf-8", "replace").strip().splitlines()[-TAIL_LINES:]
    text = "\n".join([*(["[stdout]", *out] if out else []), *(["[stderr]", *err] if err else [])])
    return text[-TAIL_CHARS:]


def classify(run: ProgramRun) -> SmokeResult:
    tail = output_tail(run.stdout, run.stderr)
    if run.status == "passed":
        return SmokeResult("passed", f"ran {run.wall_s:.1f}s, {len(run.metrics)} METRICS lines", "", run.wall_s)
    if run.status == "failed" and any(marker in tail for marker in NOT_THE_PROGRAMS_FAULT):
        return SmokeResult("inconclusive", "its dataset is not staged on this machine", tail, run.wall_s)
    if run.status == "failed":
        return SmokeResult("failed", run.error or "failed", tail, run.wall_s)
    # timeout / killed / invalid: a slow CPU or the sandbox's limits, not proof of a bug.
    return SmokeResult("inconclusive", f"{run.status}: {run.error or ''}".strip(), tail, run.wall_s)


def _smoke_uid_base() -> int:
    # The sandbox runs slot N as uid `uid_base + N` and, when a program ends, kills every process of
    # that uid. The test executor uses uid_base 61000, so a smoke run on the same machine takes its
    # own uid, different per process, or the two would kill each other's programs.
    return SMOKE_UID_BASE + os.getpid() % SMOKE_UID_SPAN


def smoke_run(
    code: str,
    paper_id: str = "smoke",
    time_budget_s: float = 15.0,
    timeout_s: float = 120.0,
    work_root: str | None = None,
) -> SmokeResult:
    """Run `code` once in the sandbox on this machine with a short budget; never raises for anything
    the program does."""
    sha = hashlib.sha256(code.encode("utf-8")).hexdigest()
    job = ProgramJob(paper_id=paper_id, code=code, sha256=sha, run_name=f"smoke-{sha[:12]}", timeout_s=timeout_s)
    if work_root is not None:
        Path(work_root).mkdir(parents=True, exist_ok=True)
    device = detect_device()
    with tempfile.TemporaryDirectory(prefix="annapurna-smoke-", dir=work_root) as root:
        job_dir = prepare_job_dir(Path(root), job)
        env = {"HOME": str(job_dir), "PYTHONPATH": str(job_dir), "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
               "ANNAPURNA_TIME_BUDGET_S": str(time_budget_s), **slot_env(device, 0, 1)}
        # Datasets already staged on this machine are visible (read-only); others make it inconclusive.
        cache = os.environ.get("DATASET_CACHE_DIR", "")
        read_only = [Path(cache)] if cache and Path(cache).is_dir() else []
        if read_only:
            env["DATASET_CACHE_DIR"] = cache
        limits = SandboxLimits(timeout_s=timeout_s, memory_bytes=SMOKE_MEMORY_BYTES, uid_base=_smoke_uid_base())
        outcome = run_sandboxed([sys.executable, "launch.py"], job_dir, clean_env(env), limits, slot=0,
                                read_only=read_only)
    metrics = parse_metrics(outcome.stdout.decode("utf-8", "replace"))
    status, error = status_of(outcome, metrics)
    run = ProgramRun(paper_id=paper_id, sha256=sha, status=status, exit_code=outcome.exit_code,
                     wall_s=round(outcome.wall_s, 3), device=device, runtime=f"smoke-{device}", metrics=metrics,
                     stdout=outcome.stdout, stderr=outcome.stderr, error=error, protections=outcome.protections)
    return classify(run)
