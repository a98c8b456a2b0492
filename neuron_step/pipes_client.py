"""`NeuronPipesClient`: the executor `test_results` uses. One Dagster Pipes session per program, the
message file inside the program's own folder, slots in threads, one materialization at the end (by
the asset). Transport `local` runs here in a sandboxed subprocess."""

from __future__ import annotations

import os
import queue
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from neuron_step.executor import ProgramExecutor
from neuron_step.metrics import parse_metrics
from neuron_step.sandbox import SandboxLimits, SandboxOutcome, clean_env, run_sandboxed
from neuron_step.types import ProgramJob, ProgramRun, RunStatus

# Dagster marks a Pipes internal it calls itself as preview; the warning says nothing to our users.
warnings.filterwarnings("ignore", message=".*expected_writer_count.*")

RUNTIME_DIR = Path(__file__).parent / "runtime"
RUNTIME_FILES = ("launch.py", "dataset_loader.py", "annapurna_device.py", "dataset_formats.py")


def detect_device() -> str:
    if os.environ.get("NEURON_RT_VISIBLE_CORES") or Path("/dev/neuron0").exists():
        return "neuron"
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except ImportError:
        pass
    return "cpu"


def slot_env(device: str, slot: int, slots: int) -> dict[str, str]:
    """Pin a slot to its own core/GPU; two programs never share one."""
    if device == "neuron":
        return {"NEURON_RT_VISIBLE_CORES": str(slot)}
    if device == "cuda":
        return {"CUDA_VISIBLE_DEVICES": str(slot)}
    threads = str(max(1, (os.cpu_count() or 1) // max(1, slots)))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "ANNAPURNA_DEVICE": "cpu"}


def status_of(outcome: SandboxOutcome, metrics: list[dict]) -> tuple[RunStatus, str | None]:
    if outcome.termination == "not_started":
        return "failed", outcome.error
    if outcome.termination == "timeout":
        return "timeout", f"killed after the {outcome.wall_s:.0f}s wall-time limit"
    if outcome.termination == "signal":
        return "killed", f"killed by signal {outcome.signal}"
    if outcome.exit_code != 0:
        tail = outcome.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return "failed", f"exit code {outcome.exit_code}: {tail[0][:300]}"
    if not metrics:
        return "failed", "exited 0 but printed no METRICS line"
    return "passed", None


def prepare_job_dir(root: Path, job: ProgramJob) -> Path:
    job_dir = root / f"{job.run_name}-{uuid.uuid4().hex[:8]}"
    job_dir.mkdir(parents=True)
    (job_dir / "program.py").write_text(job.code)
    for name in RUNTIME_FILES:
        if (RUNTIME_DIR / name).exists():
            shutil.copy2(RUNTIME_DIR / name, job_dir / name)
    return job_dir


class NeuronPipesClient(ProgramExecutor):
    transport: str = "local"
    slots: int = 2
    timeout_s: float = 1800.0
    time_budget_s: float = 600.0
    memory_limit_gb: float = 8.0
    work_root: str = "/tmp/annapurna-jobs"
    keep_job_dirs: bool = False

    @property
    def runtime(self) -> str:
        return f"{self.transport}-{detect_device()}"

    def _limits(self, job: ProgramJob) -> SandboxLimits:
        return SandboxLimits(timeout_s=job.timeout_s or self.timeout_s, memory_bytes=int(self.memory_limit_gb * 1024**3))

    def run_one(self, context: dg.AssetExecutionContext | None, job: ProgramJob, slot: int) -> ProgramRun:
        device = detect_device()
        job_dir = prepare_job_dir(Path(self.work_root), job)
        env = {
            "HOME": str(job_dir), "PYTHONPATH": str(job_dir), "PYTHONUNBUFFERED": "1",
            "ANNAPURNA_TIME_BUDGET_S": str(self.time_budget_s), "MPLBACKEND": "Agg",
            **slot_env(device, slot, self.slots),
        }
        n_messages = 0
        try:
            with ExitStack() as stack:
                session = None
                if context is not None:
                    session = stack.enter_context(dg.open_pipes_session(
                        context=context, context_injector=dg.PipesEnvContextInjector(),
                        message_reader=dg.PipesFileMessageReader(str(job_dir / "pipes.jsonl")),
                        extras={"paper_id": job.paper_id, "sha256": job.sha256},
                    ))
                    env.update(session.get_bootstrap_env_vars())
                outcome = run_sandboxed([sys.executable, "launch.py"], job_dir, clean_env(env), self._limits(job))
            if session is not None:
                n_messages = len(session.get_custom_messages())
        finally:
            if not self.keep_job_dirs:
                shutil.rmtree(job_dir, ignore_errors=True)
        metrics = parse_metrics(outcome.stdout.decode("utf-8", "replace"))
        status, error = status_of(outcome, metrics)
        return ProgramRun(
            paper_id=job.paper_id, sha256=job.sha256, status=status, exit_code=outcome.exit_code,
            wall_s=round(outcome.wall_s, 3), device=device, runtime=self.runtime, metrics=metrics,
            stdout=outcome.stdout, stderr=outcome.stderr, error=error, protections=outcome.protections,
            pipes_messages=n_messages, slot=f"{device}:{slot}",
        )

    def run_programs(self, context: dg.AssetExecutionContext | None, jobs: list[ProgramJob]) -> Iterator[ProgramRun]:
        if self.transport != "local":
            raise ValueError(f"transport {self.transport!r} is not available in this build; use 'local'")
        free: queue.Queue[int] = queue.Queue()
        for s in range(max(1, self.slots)):
            free.put(s)

        def with_slot(job: ProgramJob) -> ProgramRun:
            slot = free.get()
            try:
                return self.run_one(context, job, slot)
            finally:
                free.put(slot)

        with ThreadPoolExecutor(max_workers=max(1, self.slots), thread_name_prefix="slot") as pool:
            pending: set[Future[ProgramRun]] = {pool.submit(with_slot, j) for j in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
