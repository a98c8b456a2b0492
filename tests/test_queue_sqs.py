"""The SQS backend with real boto3 against moto's standalone server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from annapurna_resources.queue import GenerateRequest, parse_request
from annapurna_resources.queue.sqs import SqsRequestQueue


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto accepts any credentials; these keep boto3 away from any real ones on the machine.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def queue(moto_endpoint: str, aws_env: None, request: pytest.FixtureRequest) -> SqsRequestQueue:
    # A fresh pair of queues per test: moto keeps state for the whole server.
    suffix = request.node.name.replace("_", "-")[-40:]
    q = SqsRequestQueue(
        queue_name=f"q-{suffix}.fifo",
        dead_letter_queue_name=f"dlq-{suffix}.fifo",
        region_name="us-east-1",
        endpoint_url=moto_endpoint,
        visibility_timeout_s=30,
    )
    q.ensure_queues()
    return q


def _raw(q: SqsRequestQueue) -> Any:  # a boto3 SQS client
    return boto3.client("sqs", region_name="us-east-1", endpoint_url=q.endpoint_url)


def test_queues_are_fifo_with_a_redrive_policy(queue: SqsRequestQueue) -> None:
    sqs = _raw(queue)
    attrs = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":" + queue.dead_letter_queue_name)
    assert int(redrive["maxReceiveCount"]) == queue.max_receive_count
    # Idempotent: a second deployment run finds the same queue.
    assert queue.ensure_queues() == queue.url


def test_send_receive_delete_round_trip(queue: SqsRequestQueue) -> None:
    request = GenerateRequest(action="generate_by_title", title="Attention Is All You Need", max_papers=1)
    message_id = queue.send_request(request)
    got = queue.receive()
    assert [m.message_id for m in got] == [message_id]
    assert parse_request(got[0].body) == request
    assert got[0].attributes["MessageGroupId"] == "generate-requests"
    assert got[0].receive_count == 1
    # In flight: invisible to a second receive until deleted or the visibility timeout passes.
    assert queue.receive() == []
    queue.delete(got[0])
    sqs = _raw(queue)
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_fifo_order_and_deduplication(queue: SqsRequestQueue) -> None:
    ids = [queue.send(json.dumps({"action": "generate_recent", "max_papers": n})) for n in (1, 2, 3)]
    # The same body again within the deduplication window is accepted but never delivered.
    queue.send(json.dumps({"action": "generate_recent", "max_papers": 1}))
    got = queue.receive(max_messages=10)
    assert [m.message_id for m in got] == ids
    for m in got:
        queue.delete(m)
    assert queue.receive() == []


def test_dead_letter_moves_the_message_with_its_reason(queue: SqsRequestQueue) -> None:
    queue.send("this is not json")
    good_id = queue.send(json.dumps({"action": "generate_recent"}))
    bad, good = queue.receive()
    queue.dead_letter(bad, "message body is not JSON")
    queue.delete(good)
    sqs = _raw(queue)
    dlq_url = sqs.get_queue_url(QueueName=queue.dead_letter_queue_name)["QueueUrl"]
    moved = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    assert len(moved) == 1
    assert moved[0]["Body"] == "this is not json"
    assert moved[0]["MessageAttributes"]["dead_letter_reason"]["StringValue"] == "message body is not JSON"
    assert moved[0]["MessageAttributes"]["original_message_id"]["StringValue"] == bad.message_id
    assert good.message_id == good_id
    # Gone from the main queue, not merely in flight: nothing comes back after the visibility timeout.
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_redrive_without_explicit_dlq_returns_the_message_for_redelivery(
    moto_endpoint: str, aws_env: None
) -> None:
    q = SqsRequestQueue(
        queue_name="redrive-only.fifo", dead_letter_queue_name=None, region_name="us-east-1",
        endpoint_url=moto_endpoint, visibility_timeout_s=60,
    )
    q.ensure_queues()
    q.send("junk")
    first = q.receive()[0]
    q.dead_letter(first, "not json")
    # Made visible again at once, so the queue's own redrive (if any) counts the delivery.
    again = q.receive()
    assert [m.message_id for m in again] == [first.message_id]
    assert again[0].receive_count == 2


def test_deleting_twice_is_not_an_error(queue: SqsRequestQueue) -> None:
    queue.send('{"action": "generate_recent"}')
    m = queue.receive()[0]
    queue.delete(m)
    queue.delete(m)
    assert queue.receive() == []


def test_queue_url_given_explicitly_skips_the_lookup(queue: SqsRequestQueue) -> None:
    direct = SqsRequestQueue(queue_url=queue.url, region_name="us-east-1", endpoint_url=queue.endpoint_url,
                             dead_letter_queue_name=queue.dead_letter_queue_name)
    mid = direct.send('{"action": "generate_recent"}')
    assert [m.message_id for m in queue.receive()] == [mid]
