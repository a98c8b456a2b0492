"""The request queue: generate requests from people and other systems (SQS in production, a spool folder locally).

A message is received, turned into a run, and deleted only once that run is on record; a message
that cannot be understood is moved aside to a dead-letter place with the reason, so it never blocks
the messages behind it.

Payloads keep the earlier design's format, e.g.
`{"action": "generate_by_title", "title": "Attention Is All You Need", "max_papers": 1}`.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

GenerateAction = Literal[
    "generate_by_id",
    "generate_by_ids",
    "generate_by_title",
    "generate_by_author",
    "generate_by_keywords",
    "generate_recent",
    "get_paper_info",
]
GENERATE_ACTIONS: tuple[str, ...] = GenerateAction.__args__  # type: ignore[attr-defined]

# All requests share one FIFO message group unless the sender says otherwise: order is kept, and a
# consumer that deletes promptly never holds the group up for long.
DEFAULT_MESSAGE_GROUP = "generate-requests"

# Paper ids end up in object keys and run tags: the same alphabet SourcePaper promises.
_PAPER_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
MAX_PAPERS_LIMIT = 100
MAX_BODY_BYTES = 256 * 1024  # SQS's own message size limit; the spool keeps the same one


class InvalidRequest(ValueError):
    """A message body that is not a valid generate request; the text says what is wrong with it."""


class GenerateRequest(BaseModel):
    """One generate request; which fields are required depends on `action`."""

    # Unknown fields are refused rather than ignored: a misspelt `titel` should fail loudly, not
    # silently turn into a request for the most recent papers.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    action: GenerateAction
    paper_id: str | None = Field(default=None, max_length=200)
    paper_ids: list[str] | None = Field(default=None, max_length=MAX_PAPERS_LIMIT)
    title: str | None = Field(default=None, max_length=1000)
    author: str | None = Field(default=None, max_length=300)
    keywords: list[str] | None = Field(default=None, max_length=20)
    max_papers: int = Field(default=1, ge=1, le=MAX_PAPERS_LIMIT)

    @field_validator("keywords", mode="before")
    @classmethod
    def _split_keyword_string(cls, value: Any) -> Any:
        # The earlier design's clients sent keywords as one string: "diffusion, image editing".
        if isinstance(value, str):
            sep = "," if "," in value else None
            return [k.strip() for k in value.split(sep) if k.strip()]
        return value

    @field_validator("paper_id")
    @classmethod
    def _check_paper_id(cls, value: str | None) -> str | None:
        if value is not None and not _PAPER_ID.match(value):
            raise ValueError(f"paper_id {value!r} may only hold letters, digits, '.', '_' and '-'")
        return value

    @field_validator("paper_ids")
    @classmethod
    def _check_paper_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [v for v in value if not _PAPER_ID.match(v)]
        if bad:
            raise ValueError(f"paper_ids may only hold letters, digits, '.', '_' and '-': {bad[:3]!r}")
        return value

    @model_validator(mode="after")
    def _required_for_action(self) -> GenerateRequest:
        needs = {
            "generate_by_id": ("paper_id",),
            "generate_by_ids": ("paper_ids",),
            "generate_by_title": ("title",),
            "generate_by_author": ("author",),
            "generate_by_keywords": ("keywords",),
            "generate_recent": (),
        }
        if self.action == "get_paper_info":
            if not (self.paper_id or self.title):
                raise ValueError("get_paper_info needs paper_id or title")
        else:
            for name in needs[self.action]:
                if not getattr(self, name):
                    raise ValueError(f"{self.action} needs a non-empty {name}")
        return self

    def to_body(self) -> str:
        """The message body: the earlier design's JSON, without the fields left unset."""
        return json.dumps(self.model_dump(exclude_none=True), sort_keys=True)

    def describe(self) -> str:
        """A short human description for logs and run tags."""
        target = self.paper_id or self.title or self.author or (self.paper_ids and ",".join(self.paper_ids))
        if self.keywords:
            target = " ".join(self.keywords)
        return f"{self.action}({target or ''}, max_papers={self.max_papers})"


def parse_request(body: str | bytes | dict[str, Any]) -> GenerateRequest:
    """Parse and validate a message body; raise InvalidRequest with a readable reason."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY_BYTES:
            raise InvalidRequest(f"message body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"message body is not UTF-8: {exc}") from None
    if isinstance(body, str):
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:
            raise InvalidRequest(f"message body is over the {MAX_BODY_BYTES}-byte limit")
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"message body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"message body must be a JSON object, not {type(body).__name__}")
    try:
        return GenerateRequest.model_validate(body)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidRequest(f"invalid generate request: {reasons}") from None


def deduplication_id(body: str) -> str:
    """FIFO deduplication id for a body: the same request sent twice within the window counts once."""
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    body: str
    # What `delete` and `dead_letter` need to find this delivery again (an SQS receipt handle, a
    # spool file name).
    receipt_handle: str
    receive_count: int = 1
    attributes: dict[str, str] = field(default_factory=dict)


class RequestQueue(dg.ConfigurableResource, ABC):
    """One interface for every backend; sensors and the CLI only ever see this type."""

    @abstractmethod
    def send(self, body: str, group_id: str = DEFAULT_MESSAGE_GROUP, dedup_id: str | None = None) -> str:
        """Enqueue `body`; returns the message id. The same `dedup_id` (default: the body's hash)
        sent again within the deduplication window is accepted but never delivered a second time."""

    @abstractmethod
    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        """Up to `max_messages` messages in FIFO order, without removing them; an SQS message
        stays invisible to other consumers for the visibility timeout. Never blocks for long."""

    @abstractmethod
    def delete(self, message: QueueMessage) -> None:
        """Remove a message whose work is on record. Deleting one already gone is not an error."""

    @abstractmethod
    def dead_letter(self, message: QueueMessage, reason: str) -> None:
        """Move a message that cannot be processed aside, with `reason`, so it no longer blocks the queue."""

    def send_request(self, request: GenerateRequest, group_id: str = DEFAULT_MESSAGE_GROUP) -> str:
        body = request.to_body()
        return self.send(body, group_id=group_id, dedup_id=deduplication_id(body))
