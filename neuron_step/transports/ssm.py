"""The `ssm` transport: SSM Run Command (`AWS-RunShellScript`) on the Trainium instance; no open port.

The bundle goes to S3, one shell command on the host runs `annapurna-executor run-s3`, which fetches
it, runs it in the host's sandbox and puts `result.json` back beside it; SSM itself keeps the shell's
stdout/stderr under the same prefix (`OutputS3BucketName`), which is what we show when no result came.

Two traps of the real service are handled here:
- right after `send_command`, `get_command_invocation` answers `InvocationDoesNotExist` for a moment
  (the invocation is created asynchronously): retried until a grace period ends;
- the command needs its own `executionTimeout` (the document's default is 3600 s): set above the
  program's wall-time limit, so the sandbox, not SSM, is what ends a slow program.
"""

from __future__ import annotations

import argparse
import shlex
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from neuron_step.transports import (
    Bundle,
    Outcome,
    SandboxRunner,
    Transport,
    TransportError,
    execute_bundle,
    outcome_from_error,
)

DOCUMENT = "AWS-RunShellScript"
# SSM's states for one invocation.
PENDING_STATES = {"Pending", "InProgress", "Delayed"}
FINAL_STATES = {"Success", "Failed", "Cancelled", "TimedOut"}
# How long InvocationDoesNotExist is taken as "not created yet" rather than as an error.
INVOCATION_GRACE_S = 60.0
# Headroom above the program's own limit for fetching, unpacking and uploading.
EXECUTION_TIMEOUT_MARGIN_S = 300
# SSM limits: executionTimeout at most 48 h; the delivery timeout (TimeoutSeconds) at least 30 s.
MAX_EXECUTION_TIMEOUT_S = 172800


def build_commands(executor_command: str, bucket: str, bundle_key: str, result_key: str,
                   region_name: str | None, work_root: str) -> list[str]:
    """The shell lines sent to the instance. Every value is quoted: keys derive from paper ids."""
    argv = [*shlex.split(executor_command), "run-s3", "--bucket", bucket, "--bundle-key", bundle_key,
            "--result-key", result_key, "--work-root", work_root]
    if region_name:
        argv += ["--region", region_name]
    return ["set -eu", " ".join(shlex.quote(a) for a in argv)]


def execution_timeout_s(program_timeout_s: float) -> int:
    return int(min(MAX_EXECUTION_TIMEOUT_S, max(60, program_timeout_s + EXECUTION_TIMEOUT_MARGIN_S)))


def wait_for_invocation(ssm: Any, command_id: str, instance_id: str, deadline: float,
                        poll_interval_s: float = 2.0, grace_s: float = INVOCATION_GRACE_S,
                        sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Poll until the invocation reaches a final state. `InvocationDoesNotExist` within `grace_s` of
    the first call means "not created yet", after that it is an error."""
    started = clock()
    while True:
        try:
            invocation = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code != "InvocationDoesNotExist" or clock() - started > grace_s:
                raise TransportError(f"SSM command {command_id} on {instance_id}: {code or exc}") from exc
            invocation = None
        if invocation is not None and invocation.get("Status") in FINAL_STATES:
            return invocation
        if clock() > deadline:
            raise TransportError(f"SSM command {command_id} on {instance_id} not finished by its deadline "
                                 f"(last status {invocation and invocation.get('Status')})")
        sleep(poll_interval_s)


class SsmTransport(Transport):
    name = "ssm"

    def __init__(self, instance_id: str, bucket: str, ssm_client: Any, s3_client: Any,
                 prefix: str = "neuron-runs", executor_command: str = "/opt/annapurna/venv/bin/annapurna-executor",
                 host_work_root: str = "/var/lib/annapurna/jobs", region_name: str | None = None,
                 poll_interval_s: float = 5.0, invocation_grace_s: float = INVOCATION_GRACE_S) -> None:
        self.instance_id = instance_id
        self.bucket = bucket
        self.ssm = ssm_client
        self.s3 = s3_client
        self.prefix = prefix.strip("/")
        self.executor_command = executor_command
        self.host_work_root = host_work_root
        self.region_name = region_name
        self.poll_interval_s = poll_interval_s
        self.invocation_grace_s = invocation_grace_s

    def execute(self, bundle: Bundle) -> Outcome:
        # A fresh prefix per attempt: a retried run never reads the result of an earlier attempt.
        base = f"{self.prefix}/{bundle.run_name}/{uuid.uuid4().hex}"
        bundle_key, result_key = f"{base}/bundle.json", f"{base}/result.json"
        self.s3.put_object(Bucket=self.bucket, Key=bundle_key, Body=bundle.to_json().encode("utf-8"))
        exec_timeout = execution_timeout_s(bundle.timeout_s)
        try:
            sent = self.ssm.send_command(
                InstanceIds=[self.instance_id],
                DocumentName=DOCUMENT,
                Comment=f"annapurna {bundle.run_name}"[:100],
                TimeoutSeconds=600,  # delivery: how long the instance may take to pick the command up
                Parameters={"commands": build_commands(self.executor_command, self.bucket, bundle_key,
                                                       result_key, self.region_name, self.host_work_root),
                            "executionTimeout": [str(exec_timeout)]},
                OutputS3BucketName=self.bucket,
                OutputS3KeyPrefix=f"{base}/ssm",
            )
        except ClientError as exc:
            raise TransportError(f"SSM send_command to {self.instance_id} failed: {exc}") from exc
        command_id = sent["Command"]["CommandId"]
        invocation = wait_for_invocation(self.ssm, command_id, self.instance_id,
                                         deadline=time.monotonic() + exec_timeout + 600,
                                         poll_interval_s=self.poll_interval_s, grace_s=self.invocation_grace_s)
        result = self._get_optional(result_key)
        if result is not None:
            try:
                outcome = Outcome.from_json(result)
            except (ValueError, KeyError, TypeError) as exc:
                raise TransportError(f"host wrote an unreadable result at {result_key}: {exc}") from exc
            return outcome
        status = invocation.get("Status")
        detail = (invocation.get("StandardErrorContent") or invocation.get("StandardOutputContent") or "").strip()
        if status == "TimedOut":
            return Outcome(status="timeout", exit_code=None, wall_s=float(exec_timeout), stdout=b"",
                           stderr=detail.encode(), error=f"SSM executionTimeout ({exec_timeout} s) ended the command")
        raise TransportError(f"SSM command {command_id} ended {status} without a result at "
                             f"s3://{self.bucket}/{result_key}: {detail[-2000:] or 'no output'}")

    def _get_optional(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise TransportError(f"reading s3://{self.bucket}/{key}: {exc}") from exc


# ------------------------------------------------------------------------------------------ host side

def run_from_s3(s3: Any, bucket: str, bundle_key: str, result_key: str, work_root: Path,
                runner: SandboxRunner, python: str) -> Outcome:
    """What the SSM command runs on the host: fetch, run sandboxed, put the result back. A bundle that
    cannot be read still gets a result (status invalid), so the orchestrator learns why."""
    try:
        bundle = Bundle.from_json(s3.get_object(Bucket=bucket, Key=bundle_key)["Body"].read())
    except (ValueError, KeyError, TypeError) as exc:
        outcome = outcome_from_error(f"unreadable bundle s3://{bucket}/{bundle_key}: {exc}")
    else:
        outcome = execute_bundle(bundle, work_root, runner, python)
    s3.put_object(Bucket=bucket, Key=result_key, Body=outcome.to_json().encode("utf-8"))
    return outcome


def register_host_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("run-s3", help="run one bundle from S3 (what the ssm transport sends)")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--bundle-key", required=True)
    parser.add_argument("--result-key", required=True)
    parser.add_argument("--work-root", default="/var/lib/annapurna/jobs")
    parser.add_argument("--region", default=None)
    return parser
