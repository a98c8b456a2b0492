"""The Trainium host's lifecycle against moto's EC2 server (real boto3, real waiters)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from neuron_step.host import Ec2Host, HostCapacityError, HostError
from tests.local_moto import REGION, moto_server


@pytest.fixture
def ec2_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server(monkeypatch) as endpoint:
        yield endpoint


def _stopped_trn1(endpoint: str) -> tuple[Any, str]:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    instance_id = ec2.run_instances(ImageId=image, InstanceType="trn1.2xlarge", MinCount=1, MaxCount=1)[
        "Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance_id])
    return ec2, instance_id


def _state(ec2: Any, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def _host(endpoint: str, instance_id: str) -> Ec2Host:
    return Ec2Host(instance_id=instance_id, region_name=REGION, endpoint_url=endpoint,
                   waiter_delay_s=1, waiter_max_attempts=5)


def test_host_is_started_waited_for_and_stopped_after_the_batch(ec2_endpoint: str) -> None:
    ec2, instance_id = _stopped_trn1(ec2_endpoint)
    host = _host(ec2_endpoint, instance_id)
    assert _state(ec2, instance_id) == "stopped"
    with host.running() as info:
        assert info.state == "running" and info.started_by_us
        assert info.instance_type == "trn1.2xlarge"
        assert _state(ec2, instance_id) == "running"
        # Both waiters passed: moto reports status checks of a running instance as ok.
        status = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]
        assert status["InstanceStatus"]["Status"] == "ok"
    assert _state(ec2, instance_id) in ("stopping", "stopped")


def test_host_is_stopped_also_when_the_batch_fails(ec2_endpoint: str) -> None:
    ec2, instance_id = _stopped_trn1(ec2_endpoint)
    with pytest.raises(RuntimeError, match="batch broke"), _host(ec2_endpoint, instance_id).running():
        assert _state(ec2, instance_id) == "running"
        raise RuntimeError("batch broke")
    assert _state(ec2, instance_id) in ("stopping", "stopped")


def test_already_running_host_is_used_and_still_stopped_when_done(ec2_endpoint: str) -> None:
    ec2, instance_id = _stopped_trn1(ec2_endpoint)
    ec2.start_instances(InstanceIds=[instance_id])
    with _host(ec2_endpoint, instance_id).running() as info:
        assert info.state == "running" and not info.started_by_us
    assert _state(ec2, instance_id) in ("stopping", "stopped")


def test_unknown_or_terminated_instance_is_a_clear_error(ec2_endpoint: str) -> None:
    ec2, instance_id = _stopped_trn1(ec2_endpoint)
    with pytest.raises(HostError, match="i-0000000000000dead"):
        _host(ec2_endpoint, "i-0000000000000dead").start()
    ec2.terminate_instances(InstanceIds=[instance_id])
    with pytest.raises(HostError, match="terminated"):
        _host(ec2_endpoint, instance_id).start()


def test_insufficient_capacity_is_reported_clearly_and_the_host_still_stopped(ec2_endpoint: str) -> None:
    # moto always has capacity, so this one answer is injected on the real client with botocore's
    # Stubber; describe and stop still go through the same client code paths.
    ec2, instance_id = _stopped_trn1(ec2_endpoint)
    client = boto3.client("ec2", region_name=REGION, endpoint_url=ec2_endpoint)
    described = ec2.describe_instances(InstanceIds=[instance_id])
    stubber = Stubber(client)
    stubber.add_response("describe_instances", described, {"InstanceIds": [instance_id]})
    stubber.add_client_error("start_instances", service_error_code="InsufficientInstanceCapacity",
                             service_message="We currently do not have sufficient trn1.2xlarge capacity in the "
                                             "Availability Zone you requested (us-east-1a).", http_status_code=500)
    stubber.add_response("stop_instances", {"StoppingInstances": []}, {"InstanceIds": [instance_id]})
    with stubber, pytest.raises(HostCapacityError) as raised, _host(ec2_endpoint, instance_id).running(client):
        pytest.fail("the block must not run without a host")
    message = str(raised.value)
    assert "no trn1.2xlarge capacity" in message and "another availability zone" in message
    assert "InsufficientInstanceCapacity" in message
    stubber.assert_no_pending_responses()  # the stop was still called
