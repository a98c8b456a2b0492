"""The ssm transport against moto's SSM and S3 servers with real boto3.

moto records `send_command` but runs nothing and reports every invocation `Success` at once. So a
small stand-in for the SSM agent, hooked on the client's after-call event of SendCommand, reads the
command back from moto (`list_commands`) and runs its shell lines for real, as the agent on the
instance would: the real `annapurna-executor run-s3` then fetches the bundle from moto's S3, runs
the program and puts `result.json` back.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from neuron_step.transports import Bundle, TransportError
from neuron_step.transports.ssm import (
    DOCUMENT,
    SsmTransport,
    build_commands,
    execution_timeout_s,
    run_from_s3,
    wait_for_invocation,
)
from tests.local_moto import REGION, moto_server

REPO = Path(__file__).resolve().parents[1]
BUCKET = "papers-test-outputs"
CMD = "0b6a4c8e-1f2d-4e5a-9b7c-3d2e1f0a9b8c"
INST = "i-0123456789abcdef0"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with moto_server(monkeypatch) as endpoint:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance_id = ec2.run_instances(ImageId=image, InstanceType="trn1.2xlarge", MinCount=1, MaxCount=1)[
            "Instances"][0]["InstanceId"]
        yield {"endpoint": endpoint, "s3": s3, "instance_id": instance_id,
               "ssm": boto3.client("ssm", region_name=REGION, endpoint_url=endpoint)}


def attach_agent(ssm: Any, endpoint: str, runs: list[dict[str, Any]]) -> None:
    """Run each sent command's shell lines like the SSM agent, with SSM's output layout in S3."""
    reader = boto3.client("ssm", region_name=REGION, endpoint_url=endpoint)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)

    def on_sent(parsed: dict[str, Any], **_: Any) -> None:
        command = reader.list_commands(CommandId=parsed["Command"]["CommandId"])["Commands"][0]
        script = "\n".join(command["Parameters"]["commands"])
        env = {"PATH": os.environ["PATH"], "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION, "PYTHONPATH": str(REPO)}
        done = subprocess.run(["bash", "-c", script], env=env, cwd=REPO, capture_output=True, timeout=120)
        runs.append({"command": command, "returncode": done.returncode, "stderr": done.stderr})
        for instance_id in command["InstanceIds"]:
            base = f"{command['OutputS3KeyPrefix']}/{command['CommandId']}/{instance_id}/awsrunShellScript/0.awsrunShellScript"
            s3.put_object(Bucket=command["OutputS3BucketName"], Key=f"{base}/stdout", Body=done.stdout)
            s3.put_object(Bucket=command["OutputS3BucketName"], Key=f"{base}/stderr", Body=done.stderr)

    ssm.meta.events.register("after-call.ssm.SendCommand", on_sent)


def make_bundle(code: str, timeout_s: float = 30.0) -> Bundle:
    sha = hashlib.sha256(code.encode()).hexdigest()
    return Bundle(run_name=f"paper-{sha[:12]}", sha256=sha, files={"program.py": code.encode()},
                  argv=["{python}", "program.py"], timeout_s=timeout_s)


def transport_for(aws: dict[str, Any], **kwargs: Any) -> SsmTransport:
    return SsmTransport(aws["instance_id"], BUCKET, aws["ssm"], aws["s3"], region_name=REGION,
                        executor_command=f"{sys.executable} -m neuron_step.executor_service",
                        poll_interval_s=0.05, **kwargs)


def test_program_runs_through_ssm_and_s3(aws: dict[str, Any], tmp_path: Path) -> None:
    runs: list[dict[str, Any]] = []
    attach_agent(aws["ssm"], aws["endpoint"], runs)
    transport = transport_for(aws, host_work_root=str(tmp_path / "jobs"))
    code = ("import json\nprint('METRICS: ' + json.dumps({'loss': 0.25}))\n"
            "open('metrics.json', 'w').write('[{\"loss\": 0.25}]')\n")
    outcome = transport.execute(make_bundle(code, timeout_s=900))
    assert runs and runs[0]["returncode"] == 0, runs and runs[0]["stderr"]
    assert outcome.status == "passed" and outcome.exit_code == 0
    assert b'METRICS: {"loss": 0.25}' in outcome.stdout
    assert outcome.files["metrics.json"] == b'[{"loss": 0.25}]'

    command = runs[0]["command"]
    assert command["DocumentName"] == DOCUMENT == "AWS-RunShellScript"
    assert command["InstanceIds"] == [aws["instance_id"]]
    # The command's own limit sits above the program's, so the sandbox is what stops a slow program.
    assert command["Parameters"]["executionTimeout"] == [str(900 + 300)]
    assert command["OutputS3BucketName"] == BUCKET
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]]
    prefix = command["OutputS3KeyPrefix"].removesuffix("/ssm")
    assert {f"{prefix}/bundle.json", f"{prefix}/result.json"} <= set(keys)
    assert any(k.startswith(f"{prefix}/ssm/{command['CommandId']}/") and k.endswith("/stdout") for k in keys)


def test_failing_program_comes_back_as_a_result(aws: dict[str, Any], tmp_path: Path) -> None:
    attach_agent(aws["ssm"], aws["endpoint"], [])
    outcome = transport_for(aws, host_work_root=str(tmp_path / "jobs")).execute(
        make_bundle("import sys; print('boom', file=sys.stderr); sys.exit(4)\n"))
    assert outcome.status == "failed" and outcome.exit_code == 4 and outcome.stderr == b"boom\n"


def test_command_that_left_no_result_is_a_transport_error(aws: dict[str, Any]) -> None:
    # No agent: moto reports Success, but nothing ran, so no result.json exists.
    with pytest.raises(TransportError, match="without a result"):
        transport_for(aws).execute(make_bundle("print(1)\n"))


def test_invocation_does_not_exist_right_after_send_is_retried() -> None:
    ssm = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(ssm)
    params = {"CommandId": CMD, "InstanceId": INST}
    for _ in range(2):
        stubber.add_client_error("get_command_invocation", "InvocationDoesNotExist", expected_params=params)
    stubber.add_response("get_command_invocation", {"Status": "InProgress"}, params)
    stubber.add_response("get_command_invocation", {"Status": "Success", "ResponseCode": 0}, params)
    sleeps: list[float] = []
    with stubber:
        invocation = wait_for_invocation(ssm, CMD, INST, deadline=float("inf"), poll_interval_s=1.5,
                                         sleep=sleeps.append)
    assert invocation["Status"] == "Success" and sleeps == [1.5, 1.5, 1.5]
    stubber.assert_no_pending_responses()


def test_invocation_that_never_appears_is_an_error_after_the_grace_period() -> None:
    ssm = boto3.client("ssm", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(ssm)
    for _ in range(3):
        stubber.add_client_error("get_command_invocation", "InvocationDoesNotExist")
    now = iter([0.0, 0.0, 30.0, 61.0])  # a fake clock: the third answer comes after the 60 s grace
    with stubber, pytest.raises(TransportError, match="InvocationDoesNotExist"):
        wait_for_invocation(ssm, CMD, INST, deadline=float("inf"), sleep=lambda _s: None,
                            clock=lambda: next(now))


def test_commands_quote_every_value() -> None:
    lines = build_commands("/opt/x/bin/annapurna-executor", "bucket", "runs/p;rm -rf ~/bundle.json",
                           "runs/r.json", "us-east-1", "/var/lib/annapurna/jobs")
    assert lines[0] == "set -eu"
    assert "'runs/p;rm -rf ~/bundle.json'" in lines[1]
    assert execution_timeout_s(1800) == 2100 and execution_timeout_s(10) == 310
    assert execution_timeout_s(10**9) == 172800


def test_unreadable_bundle_still_gets_a_result(aws: dict[str, Any], tmp_path: Path) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key="runs/x/bundle.json", Body=b"{broken")
    outcome = run_from_s3(aws["s3"], BUCKET, "runs/x/bundle.json", "runs/x/result.json", tmp_path,
                          runner=lambda *a: pytest.fail("must not run"), python=sys.executable)
    assert outcome.status == "invalid" and "unreadable bundle" in (outcome.error or "")
    stored = aws["s3"].get_object(Bucket=BUCKET, Key="runs/x/result.json")["Body"].read()
    assert b'"invalid"' in stored
