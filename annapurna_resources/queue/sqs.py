"""The production request queue: the SQS FIFO queue `code-evaluation.fifo` of the earlier design.

FIFO needs a MessageGroupId on every send and a MessageDeduplicationId unless the queue has
content-based deduplication; this backend always sends both, so it works either way. Messages
that cannot be understood go to an explicit dead-letter queue (also FIFO: SQS requires a FIFO
queue's DLQ to be FIFO). The same DLQ is the queue's redrive target, so a message that keeps
coming back undeleted (a consumer that crashes on it) lands there after `max_receive_count`
deliveries even if nothing moves it explicitly.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import PrivateAttr

from annapurna_resources.queue import (
    DEFAULT_MESSAGE_GROUP,
    MAX_BODY_BYTES,
    QueueMessage,
    RequestQueue,
    deduplication_id,
)
from annapurna_resources.settings import REQUEST_QUEUE

DEFAULT_DEAD_LETTER_QUEUE = "code-evaluation-dlq.fifo"


class SqsRequestQueue(RequestQueue):
    """Credentials come from boto3's usual chain (the ECS task role, an instance profile, env vars)."""

    queue_name: str = REQUEST_QUEUE
    # Explicit URLs skip the GetQueueUrl look-up (and allow a queue in another account).
    queue_url: str | None = None
    dead_letter_queue_name: str | None = DEFAULT_DEAD_LETTER_QUEUE
    dead_letter_queue_url: str | None = None
    region_name: str | None = None
    # For a local endpoint (moto in tests, LocalStack); None means the real AWS endpoint.
    endpoint_url: str | None = None
    # Long enough that a sensor tick commits its runs before the message shows up again.
    visibility_timeout_s: int = 300
    # A sensor tick must return quickly, so no long polling by default.
    wait_time_s: int = 0
    max_receive_count: int = 5

    _client: Any = PrivateAttr(default=None)
    _urls: dict[str, str] = PrivateAttr(default_factory=dict)

    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client(
                "sqs",
                region_name=self.region_name,
                endpoint_url=self.endpoint_url,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30),
            )
        return self._client

    def _url(self, name: str, explicit: str | None) -> str:
        if explicit:
            return explicit
        if name not in self._urls:
            self._urls[name] = self.client().get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[name]

    @property
    def url(self) -> str:
        return self._url(self.queue_name, self.queue_url)

    def ensure_queues(self) -> str:
        """Create the queue and its dead-letter queue with the redrive policy if missing (idempotent);
        returns the queue's URL. Deployment and tests use it; the pipeline itself never creates queues."""
        sqs = self.client()
        redrive: dict[str, str] = {}
        if self.dead_letter_queue_name:
            dlq_url = sqs.create_queue(
                QueueName=self.dead_letter_queue_name,
                Attributes={"FifoQueue": "true", "MessageRetentionPeriod": str(14 * 24 * 3600)},
            )["QueueUrl"]
            self._urls[self.dead_letter_queue_name] = dlq_url
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = {
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receive_count)})
            }
        url = sqs.create_queue(
            QueueName=self.queue_name,
            Attributes={
                "FifoQueue": "true",
                "ContentBasedDeduplication": "false",
                "VisibilityTimeout": str(self.visibility_timeout_s),
                **redrive,
            },
        )["QueueUrl"]
        self._urls[self.queue_name] = url
        return url

    def send(self, body: str, group_id: str = DEFAULT_MESSAGE_GROUP, dedup_id: str | None = None) -> str:
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:
            raise ValueError(f"message body is over the {MAX_BODY_BYTES}-byte limit")
        response = self.client().send_message(
            QueueUrl=self.url,
            MessageBody=body,
            MessageGroupId=group_id,
            # SQS allows at most 128 characters here; a sha256 hex digest is 64.
            MessageDeduplicationId=(dedup_id or deduplication_id(body))[:128],
        )
        return str(response["MessageId"])

    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        response = self.client().receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(max_messages, 10)),  # SQS's own cap per call
            WaitTimeSeconds=self.wait_time_s,
            VisibilityTimeout=self.visibility_timeout_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId", "SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        messages = []
        for m in response.get("Messages", []):
            attrs = dict(m.get("Attributes", {}))
            for name, value in m.get("MessageAttributes", {}).items():
                if "StringValue" in value:
                    attrs[name] = value["StringValue"]
            messages.append(
                QueueMessage(
                    message_id=m["MessageId"],
                    body=m.get("Body", ""),
                    receipt_handle=m["ReceiptHandle"],
                    receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
                    attributes=attrs,
                )
            )
        return messages

    def delete(self, message: QueueMessage) -> None:
        try:
            self.client().delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)
        except ClientError as exc:
            # An expired handle means the message was delivered again (to a later tick); that
            # delivery's handle deletes it. Anything else is a real error.
            if exc.response.get("Error", {}).get("Code") not in ("ReceiptHandleIsInvalid", "InvalidParameterValue"):
                raise

    def dead_letter(self, message: QueueMessage, reason: str) -> None:
        if not self.dead_letter_queue_name and not self.dead_letter_queue_url:
            # Without an explicit DLQ the redrive policy moves it after max_receive_count deliveries;
            # making it visible again now gets it there sooner.
            self.client().change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=0
            )
            return
        dlq_url = self._url(self.dead_letter_queue_name or "", self.dead_letter_queue_url)
        self.client().send_message(
            QueueUrl=dlq_url,
            MessageBody=message.body if message.body else "<empty>",
            MessageGroupId=message.attributes.get("MessageGroupId", DEFAULT_MESSAGE_GROUP),
            # The original id: moving the same message twice (a retried tick) stores it once.
            MessageDeduplicationId=message.message_id[:128],
            MessageAttributes={
                "dead_letter_reason": {"DataType": "String", "StringValue": reason[:4000] or "unknown"},
                "original_message_id": {"DataType": "String", "StringValue": message.message_id},
                "dead_lettered_at": {"DataType": "String", "StringValue": datetime.now(UTC).isoformat()},
            },
        )
        # Only once the copy is safely in the DLQ does the original go.
        self.delete(message)


def sqs_queue_from_env() -> SqsRequestQueue:
    """The queue as the aws profile builds it. ANNAPURNA_QUEUE_URL / ANNAPURNA_DLQ_URL skip the
    name look-ups; boto3 itself reads AWS_REGION and AWS_ENDPOINT_URL_SQS (a local SQS in tests)."""
    return SqsRequestQueue(
        queue_name=os.environ.get("ANNAPURNA_QUEUE_NAME") or REQUEST_QUEUE,
        queue_url=os.environ.get("ANNAPURNA_QUEUE_URL") or None,
        dead_letter_queue_name=os.environ.get("ANNAPURNA_DLQ_NAME") or DEFAULT_DEAD_LETTER_QUEUE,
        dead_letter_queue_url=os.environ.get("ANNAPURNA_DLQ_URL") or None,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    )
