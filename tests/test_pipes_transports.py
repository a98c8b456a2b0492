"""The Pipes client over its remote transports: metrics come back through Dagster Pipes whichever way
a program ran, and the EC2 host is started for the batch and stopped after it.

- http: against the executor service on 127.0.0.1 with a bearer token;
- ssm: against moto's SSM/S3/EC2 server, with the SSM agent's part played as in test_transport_ssm.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import pytest

from neuron_step.executor_service import ExecutorService, default_runner, serve
from neuron_step.pipes_client import NeuronPipesClient, batches, job_for_code
from neuron_step.types import ProgramRun
from tests.local_moto import REGION, moto_server
from tests.test_transport_ssm import BUCKET, attach_agent

TOKEN = "pipes-transport-token"


def program(i: int) -> str:
    return ("import json\n"
            f"for step in range(3):\n    print('METRICS: ' + json.dumps({{'step': step, 'loss': {i + 1} / (step + 1)}}))\n")


def run_in_asset(client: NeuronPipesClient, n: int) -> tuple[list[ProgramRun], dg.ExecuteInProcessResult]:
    runs: list[ProgramRun] = []

    @dg.asset
    def remote_runs(context):  # noqa: ANN001 - a string annotation (future import) is refused by Dagster
        runs.extend(client.run_programs(context, [job_for_code(program(i), paper_id=f"p{i}") for i in range(n)]))
        return dg.MaterializeResult(metadata={"runs": len(runs)})

    result = dg.materialize([remote_runs])
    return runs, result


@pytest.fixture
def executor_url(tmp_path: Path) -> Iterator[str]:
    service = ExecutorService(tmp_path / "host", TOKEN, default_runner(), slots=2, slot_env_var="NEURON_RT_VISIBLE_CORES")
    server = serve(service, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        service.stop()


def test_http_transport_through_pipes(executor_url: str, tmp_path: Path) -> None:
    client = NeuronPipesClient(transport="http", executor_url=executor_url, executor_token=TOKEN, slots=2,
                               poll_interval_s=0.05, work_root=str(tmp_path / "jobs"), timeout_s=60)
    assert client.runtime == "http-neuron"
    runs, result = run_in_asset(client, 3)
    assert result.success
    assert sorted(r.paper_id for r in runs) == ["p0", "p1", "p2"]
    for r in runs:
        assert r.status == "passed", (r.error, r.stderr)
        assert [m["step"] for m in r.metrics] == [0, 1, 2]
        # launch.py reported each METRICS line (and the exit) as Pipes messages, via the host.
        assert r.pipes_messages >= 4
        assert "bwrap" in r.protections or "rlimits" in r.protections


def test_http_transport_with_a_wrong_token_records_a_failure(executor_url: str, tmp_path: Path) -> None:
    client = NeuronPipesClient(transport="http", executor_url=executor_url, executor_token="wrong", slots=1,
                               poll_interval_s=0.05, work_root=str(tmp_path / "jobs"))
    runs = list(client.run_programs(None, [job_for_code(program(0))]))
    assert runs[0].status == "failed" and "refused the bearer token" in (runs[0].error or "")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with moto_server(monkeypatch) as endpoint:
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
        s3.create_bucket(Bucket=BUCKET)
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance_id = ec2.run_instances(ImageId=image, InstanceType="trn1.2xlarge", MinCount=1, MaxCount=1)[
            "Instances"][0]["InstanceId"]
        ec2.stop_instances(InstanceIds=[instance_id])
        yield {"endpoint": endpoint, "ec2": ec2, "instance_id": instance_id}


def _state(ec2: Any, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_ssm_transport_through_pipes_starts_and_stops_the_host(aws: dict[str, Any], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    states_seen: list[str] = []
    runs_log: list[dict[str, Any]] = []
    created = boto3.client
    inside_agent_setup: list[bool] = []

    def client_with_agent(service: str, *args: Any, **kwargs: Any) -> Any:
        made = created(service, *args, **kwargs)
        if service == "ssm" and not inside_agent_setup:
            inside_agent_setup.append(True)  # the agent's own clients are plain ones
            # The instance must be running whenever a command reaches it.
            made.meta.events.register("before-call.ssm.SendCommand",
                                      lambda **_: states_seen.append(_state(aws["ec2"], aws["instance_id"])))
            attach_agent(made, aws["endpoint"], runs_log)
            inside_agent_setup.clear()
        return made

    monkeypatch.setattr(boto3, "client", client_with_agent)
    client = NeuronPipesClient(transport="ssm", instance_id=aws["instance_id"], region_name=REGION,
                               aws_endpoint_url=aws["endpoint"], ssm_bucket=BUCKET, slots=2, poll_interval_s=0.05,
                               ssm_executor_command=f"{sys.executable} -m neuron_step.executor_service",
                               work_root=str(tmp_path / "jobs"), timeout_s=60)
    runs, result = run_in_asset(client, 2)
    assert result.success
    assert [r.status for r in runs] == ["passed", "passed"], [(r.error, r.stderr[-500:]) for r in runs]
    assert all(r.pipes_messages >= 4 for r in runs)
    assert states_seen == ["running", "running"]
    assert _state(aws["ec2"], aws["instance_id"]) in ("stopping", "stopped")
    # Over ssm the client assigns the NeuronCore of each slot itself.
    sent_slots = sorted(r.slot.rsplit(":", 1)[1] for r in runs)
    assert set(sent_slots) <= {"0", "1"}


def test_host_is_stopped_when_the_batch_fails(aws: dict[str, Any], tmp_path: Path) -> None:
    # No executor token for http: the transport cannot even be built, after the host was started.
    client = NeuronPipesClient(transport="http", instance_id=aws["instance_id"], region_name=REGION,
                               aws_endpoint_url=aws["endpoint"], work_root=str(tmp_path / "jobs"))
    with pytest.raises(ValueError, match="executor_token"):
        list(client.run_programs(None, [job_for_code(program(0))]))
    assert _state(aws["ec2"], aws["instance_id"]) in ("stopping", "stopped")


def test_batches_of_ten() -> None:
    jobs = [job_for_code(program(i), paper_id=f"p{i}") for i in range(23)]
    assert [len(b) for b in batches(jobs, 10)] == [10, 10, 3]
