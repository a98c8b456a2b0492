"""`NeuronPipesClient`: the executor `test_results` uses. One Dagster Pipes session per program, the
message file inside the program's own folder, slots in threads, batches, one materialization at the
end (by the asset).

Transports:
- `local`: a sandboxed subprocess on this machine (CPU or CUDA);
- `ssm`: SSM Run Command on the Trainium instance, bundles and results through S3;
- `http`: the executor service on the host (`annapurna-executor serve`), bearer token.
For `ssm` and `http`, with an `instance_id`, the EC2 host is started before the first batch and
stopped after the last, also when a batch fails. The host writes the program's Pipes messages into
its job folder; they come back with the result and are replayed into the session here before it
closes, so metrics arrive through Pipes whichever way the program ran.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from typing import Any

import dagster as dg

from neuron_step.executor import ProgramExecutor
from neuron_step.metrics import parse_metrics
from neuron_step.sandbox import SandboxLimits, SandboxOutcome, clean_env, run_sandboxed
from neuron_step.transports import PIPES_MESSAGES_FILE, Bundle, Outcome, Transport, TransportError
from neuron_step.types import ProgramJob, ProgramRun, RunStatus

# Dagster marks a Pipes internal it calls itself as preview; the warning says nothing to our users.
warnings.filterwarnings("ignore", message=".*expected_writer_count.*")

RUNTIME_DIR = Path(__file__).parent / "runtime"
RUNTIME_FILES = ("launch.py", "dataset_loader.py", "annapurna_device.py", "dataset_formats.py")
TRANSPORTS = ("local", "ssm", "http")
DEFAULT_BATCH_SIZE = 10


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
        return "killed", f"killed by signal {outcome.signal}" + _signal_hint(outcome.signal)
    return _judge_exit(outcome.exit_code, outcome.stderr, metrics)


def status_of_remote(outcome: Outcome, metrics: list[dict]) -> tuple[RunStatus, str | None]:
    """The same judgement for a result that came back from a host."""
    if outcome.status in ("timeout", "killed", "invalid"):
        return outcome.status, outcome.error or f"{outcome.status} on the host"
    if outcome.status == "failed" and outcome.exit_code is None:
        return "failed", outcome.error
    return _judge_exit(outcome.exit_code, outcome.stderr, metrics)


def _judge_exit(exit_code: int | None, stderr: bytes, metrics: list[dict]) -> tuple[RunStatus, str | None]:
    if exit_code != 0:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return "failed", f"exit code {exit_code}: {tail[0][:300]}"
    if not metrics:
        return "failed", "exited 0 but printed no METRICS line"
    return "passed", None


def _signal_hint(sig: int | None) -> str:
    # SIGXFSZ: the file-size limit; SIGKILL at exit is usually the memory or process limits.
    return {25: " (file-size limit)", 9: " (SIGKILL)"}.get(sig or 0, "")


def prepare_job_dir(root: Path, job: ProgramJob) -> Path:
    job_dir = root / f"{job.run_name}-{uuid.uuid4().hex[:8]}"
    job_dir.mkdir(parents=True)
    (job_dir / "program.py").write_text(job.code)
    for name in RUNTIME_FILES:
        if (RUNTIME_DIR / name).exists():
            shutil.copy2(RUNTIME_DIR / name, job_dir / name)
    return job_dir


def runtime_files() -> dict[str, bytes]:
    return {name: (RUNTIME_DIR / name).read_bytes() for name in RUNTIME_FILES if (RUNTIME_DIR / name).exists()}


def batches(jobs: list[ProgramJob], size: int) -> Iterator[list[ProgramJob]]:
    size = max(1, size)
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def open_program_session(stack: ExitStack, context: dg.AssetExecutionContext | None, folder: Path, job: ProgramJob,
                         env: dict[str, str], **extras: str) -> dg.PipesSession | None:
    """One Pipes session per program, its message file in the program's own folder; the bootstrap
    variables go into `env`. None outside Dagster (`annapurna exec`)."""
    if context is None:
        return None
    session = stack.enter_context(dg.open_pipes_session(
        context=context, context_injector=dg.PipesEnvContextInjector(),
        message_reader=dg.PipesFileMessageReader(str(folder / PIPES_MESSAGES_FILE)),
        extras={"paper_id": job.paper_id, "sha256": job.sha256, **extras},
    ))
    env.update(session.get_bootstrap_env_vars())
    return session


class NeuronPipesClient(ProgramExecutor):
    transport: str = "local"
    slots: int = 2
    batch_size: int = DEFAULT_BATCH_SIZE
    timeout_s: float = 1800.0
    time_budget_s: float = 600.0
    memory_limit_gb: float = 8.0
    work_root: str = "/tmp/annapurna-jobs"
    keep_job_dirs: bool = False
    # None: bubblewrap where installed; False: the fallback (limits, scrubbed env, unshare -n as root).
    use_bwrap: bool | None = None
    # Datasets: read-only inside the sandbox; staged there from the dataset store before a run.
    dataset_cache_dir: str | None = None
    dataset_store_uri: str | None = None
    # Remote hosts (ssm, http).
    remote_device: str = "neuron"
    executor_url: str | None = None
    executor_token: str | None = None
    instance_id: str | None = None
    manage_host: bool = True
    region_name: str | None = None
    aws_endpoint_url: str | None = None
    ssm_bucket: str = "papers-test-outputs"
    ssm_executor_command: str = "/opt/annapurna/venv/bin/annapurna-executor"
    poll_interval_s: float = 5.0
    # Optional: each run's metrics to CloudWatch (namespace Trainium/Training).
    cloudwatch_enabled: bool = False
    instance_type: str = "trn1.2xlarge"

    @property
    def runtime(self) -> str:
        device = detect_device() if self.transport == "local" else self.remote_device
        return f"{self.transport}-{device}"

    def _limits(self, job: ProgramJob) -> SandboxLimits:
        return SandboxLimits(timeout_s=job.timeout_s or self.timeout_s, memory_bytes=int(self.memory_limit_gb * 1024**3),
                             use_bwrap=self.use_bwrap)

    def _program_env(self, job_dir: Path | None, job: ProgramJob) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1", "ANNAPURNA_TIME_BUDGET_S": str(self.time_budget_s), "MPLBACKEND": "Agg",
               "ANNAPURNA_DATASET": job.dataset or "synthetic"}
        if job_dir is not None:
            env.update({"HOME": str(job_dir), "PYTHONPATH": str(job_dir)})
        if self.dataset_cache_dir:
            env["DATASET_CACHE_DIR"] = self.dataset_cache_dir
        return env

    def _stage_dataset(self, job: ProgramJob) -> str | None:
        """Copy the job's dataset from the dataset store into the cache before the sandbox starts
        (the sandbox has no network). A missing dataset is the program's problem: it reports it."""
        if not (self.dataset_cache_dir and self.dataset_store_uri) or job.dataset in (None, "", "synthetic"):
            return None
        from neuron_step.runtime.dataset_loader import DatasetUnavailable, ensure_cached

        try:
            ensure_cached(job.dataset, Path(self.dataset_cache_dir), self.dataset_store_uri)
        except (DatasetUnavailable, ValueError) as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------------------------ one program

    def run_one(self, context: dg.AssetExecutionContext | None, job: ProgramJob, slot: int,
                transport: Transport | None = None) -> ProgramRun:
        if transport is not None:
            return self._run_remote(context, job, slot, transport)
        device = detect_device()
        staging_error = self._stage_dataset(job)
        job_dir = prepare_job_dir(Path(self.work_root), job)
        env = {**self._program_env(job_dir, job), **slot_env(device, slot, self.slots)}
        read_only = [Path(self.dataset_cache_dir)] if self.dataset_cache_dir and Path(self.dataset_cache_dir).is_dir() else []
        n_messages = 0
        try:
            with ExitStack() as stack:
                session = open_program_session(stack, context, job_dir, job, env)
                outcome = run_sandboxed([sys.executable, "launch.py"], job_dir, clean_env(env), self._limits(job),
                                        slot=slot, read_only=read_only)
                messages_file = job_dir / PIPES_MESSAGES_FILE
                if messages_file.is_symlink():  # the reader runs as us: it must not follow a program's link
                    messages_file.unlink()
            if session is not None:
                n_messages = len(session.get_custom_messages())
        finally:
            if not self.keep_job_dirs:
                shutil.rmtree(job_dir, ignore_errors=True)
        metrics = parse_metrics(outcome.stdout.decode("utf-8", "replace"))
        status, error = status_of(outcome, metrics)
        if staging_error and status != "passed":
            error = f"{error}; dataset staging: {staging_error}"
        return ProgramRun(
            paper_id=job.paper_id, sha256=job.sha256, status=status, exit_code=outcome.exit_code,
            wall_s=round(outcome.wall_s, 3), device=device, runtime=self.runtime, metrics=metrics,
            stdout=outcome.stdout, stderr=outcome.stderr, error=error, protections=outcome.protections,
            pipes_messages=n_messages, slot=f"{device}:{slot}",
        )

    def _run_remote(self, context: dg.AssetExecutionContext | None, job: ProgramJob, slot: int,
                    transport: Transport) -> ProgramRun:
        device = self.remote_device
        local_dir = Path(self.work_root) / f"{job.run_name}-{uuid.uuid4().hex[:8]}"
        local_dir.mkdir(parents=True)
        env = self._program_env(None, job)
        if transport.name == "ssm":  # the http service assigns its own slots; over ssm we do
            env.update(slot_env(device, slot, self.slots))
        files = {"program.py": job.code.encode("utf-8"), **runtime_files()}
        n_messages = 0
        outcome: Outcome
        try:
            with ExitStack() as stack:
                session = open_program_session(stack, context, local_dir, job, env, transport=transport.name)
                transport_failed = False
                bundle = Bundle(run_name=job.run_name, sha256=job.sha256, files=files, argv=["{python}", "launch.py"],
                                env=env, timeout_s=job.timeout_s or self.timeout_s)
                try:
                    outcome = transport.execute(bundle)
                except TransportError as exc:
                    transport_failed = True
                    outcome = Outcome(status="failed", exit_code=None, wall_s=0.0, stdout=b"", stderr=b"",
                                      error=f"{transport.name} transport: {exc}")
                # Replayed before the session closes, so the reader takes them in as this run's messages.
                messages = outcome.files.get(PIPES_MESSAGES_FILE)
                if messages is not None:
                    (local_dir / PIPES_MESSAGES_FILE).write_bytes(messages)
            if session is not None:
                n_messages = len(session.get_custom_messages())
        finally:
            if not self.keep_job_dirs:
                shutil.rmtree(local_dir, ignore_errors=True)
        metrics = parse_metrics(outcome.stdout.decode("utf-8", "replace"))
        status, error = status_of_remote(outcome, metrics)
        return ProgramRun(
            paper_id=job.paper_id, sha256=job.sha256, status=status, exit_code=outcome.exit_code,
            wall_s=round(outcome.wall_s, 3), device=outcome.device or device, runtime=self.runtime, metrics=metrics,
            stdout=outcome.stdout, stderr=outcome.stderr, error=error, protections=outcome.protections,
            pipes_messages=n_messages, slot=f"{outcome.host or transport.name}:{slot}",
            infrastructure_error=transport_failed,
        )

    # ------------------------------------------------------------------------------------ transports

    def _boto3_client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region_name, endpoint_url=self.aws_endpoint_url)

    def build_transport(self, host_address: str | None = None) -> Transport | None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if self.transport == "local":
            return None
        if self.transport == "ssm":
            from neuron_step.transports.ssm import SsmTransport

            if not self.instance_id:
                raise ValueError("the ssm transport needs instance_id")
            return SsmTransport(self.instance_id, self.ssm_bucket, self._boto3_client("ssm"), self._boto3_client("s3"),
                                executor_command=self.ssm_executor_command, region_name=self.region_name,
                                poll_interval_s=self.poll_interval_s)
        from neuron_step.transports.http import HttpTransport

        url = self.executor_url or (f"http://{host_address}:8000" if host_address else None)
        if not url or not self.executor_token:
            raise ValueError("the http transport needs executor_url (or a managed host) and executor_token")
        return HttpTransport(url, self.executor_token, poll_interval_s=self.poll_interval_s)

    @contextlib.contextmanager
    def _host(self) -> Iterator[str | None]:
        """The EC2 host for remote transports: up for the whole call, stopped after it."""
        if self.transport == "local" or not (self.instance_id and self.manage_host):
            yield None
            return
        from neuron_step.host import Ec2Host

        host = Ec2Host(instance_id=self.instance_id, region_name=self.region_name, endpoint_url=self.aws_endpoint_url)
        with host.running() as info:
            yield info.private_ip or info.public_ip

    # ------------------------------------------------------------------------------------ many programs

    def run_programs(self, context: dg.AssetExecutionContext | None, jobs: list[ProgramJob]) -> Iterator[ProgramRun]:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if not jobs:
            return
        with self._host() as address:
            transport = self.build_transport(address)
            if transport is not None and hasattr(transport, "wait_healthy") and self.instance_id and self.manage_host:
                transport.wait_healthy(timeout_s=600)  # the service starts after the instance's status checks
            for batch in batches(jobs, self.batch_size):
                for run in self._run_batch(context, batch, transport):
                    self._publish_metrics(run, context)
                    yield run

    def _publish_metrics(self, run: ProgramRun, context: dg.AssetExecutionContext | None) -> None:
        if not self.cloudwatch_enabled:
            return
        from neuron_step.cloudwatch import CloudWatchMetrics

        instance_type = self.instance_type if self.transport != "local" else f"local-{run.device}"
        try:
            CloudWatchMetrics(enabled=True, region_name=self.region_name, endpoint_url=self.aws_endpoint_url).publish(
                run.metrics, paper_id=run.paper_id, job_name=f"{run.paper_id}-{run.sha256[:12]}",
                instance_type=instance_type, wall_s=run.wall_s, passed=run.status == "passed")
        except Exception as exc:  # dashboards are optional; the run's result is not
            if context is not None:
                context.log.warning(f"CloudWatch metrics for {run.paper_id} not sent: {exc}")

    def _run_batch(self, context: dg.AssetExecutionContext | None, jobs: list[ProgramJob],
                   transport: Transport | None) -> Iterator[ProgramRun]:
        free: queue.Queue[int] = queue.Queue()
        for s in range(max(1, self.slots)):
            free.put(s)

        def with_slot(job: ProgramJob) -> ProgramRun:
            slot = free.get()  # a slot is held by one program at a time
            try:
                return self.run_one(context, job, slot, transport)
            finally:
                free.put(slot)

        with ThreadPoolExecutor(max_workers=max(1, self.slots), thread_name_prefix="slot") as pool:
            pending: set[Future[ProgramRun]] = {pool.submit(with_slot, j) for j in jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()


def job_for_code(code: str, paper_id: str = "adhoc", dataset: str = "synthetic",
                 timeout_s: float | None = None) -> ProgramJob:
    sha = hashlib.sha256(code.encode("utf-8")).hexdigest()
    return ProgramJob(paper_id=paper_id, code=code, sha256=sha, run_name=f"{paper_id}-{sha[:12]}",
                      dataset=dataset, timeout_s=timeout_s)


def _env_float(*names: str, default: float) -> float:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return float(value)
    return default


def executor_from_env(home: Path, aws: bool = False) -> NeuronPipesClient:
    """The executor as configured by the environment:

    `ANNAPURNA_TRANSPORT` local|ssm|http, `ANNAPURNA_SLOTS`, `ANNAPURNA_BATCH_SIZE` (10),
    `TRAINIUM_TIMEOUT`/`MAX_EXECUTION_TIME` (1800 s), `ANNAPURNA_TIME_BUDGET_S` (600 s),
    `DATASET_CACHE_DIR` (`$ANNAPURNA_HOME/datasets`), `DATASET_STORE_URI` (the dataset store:
    `s3://datasets-for-all-papers` on aws, its folder in the local object store otherwise);
    remote hosts: `NEURON_HOST_INSTANCE_ID`, `ANNAPURNA_EXECUTOR_URL`, `ANNAPURNA_EXECUTOR_TOKEN`
    (a secret: read through dg.EnvVar), `AWS_REGION`, `ANNAPURNA_SSM_BUCKET`; `ANNAPURNA_CLOUDWATCH=1`
    sends each run's metrics to CloudWatch."""
    store_uri = os.environ.get("DATASET_STORE_URI") or (
        "s3://datasets-for-all-papers" if aws else (home / "objects" / "datasets-for-all-papers").as_uri())
    token: Any = dg.EnvVar("ANNAPURNA_EXECUTOR_TOKEN") if os.environ.get("ANNAPURNA_EXECUTOR_TOKEN") else None
    return NeuronPipesClient(
        transport=os.environ.get("ANNAPURNA_TRANSPORT", "local"),
        slots=int(os.environ.get("ANNAPURNA_SLOTS", "2")),
        batch_size=int(os.environ.get("ANNAPURNA_BATCH_SIZE", str(DEFAULT_BATCH_SIZE))),
        time_budget_s=_env_float("ANNAPURNA_TIME_BUDGET_S", default=600.0),
        timeout_s=_env_float("TRAINIUM_TIMEOUT", "MAX_EXECUTION_TIME", default=1800.0),
        work_root=str(home / "jobs"),
        dataset_cache_dir=os.environ.get("DATASET_CACHE_DIR") or str(home / "datasets"),
        dataset_store_uri=store_uri,
        instance_id=os.environ.get("NEURON_HOST_INSTANCE_ID") or None,
        executor_url=os.environ.get("ANNAPURNA_EXECUTOR_URL") or None,
        executor_token=token,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        ssm_bucket=os.environ.get("ANNAPURNA_SSM_BUCKET", "papers-test-outputs"),
        cloudwatch_enabled=os.environ.get("ANNAPURNA_CLOUDWATCH", "").lower() in ("1", "true", "yes"),
        instance_type=os.environ.get("NEURON_HOST_INSTANCE_TYPE", "trn1.2xlarge"),
    )
