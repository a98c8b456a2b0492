"""A Messages API on 127.0.0.1 for tests of the real `anthropic` client, plain and Bedrock.

It answers `POST /v1/messages` (Anthropic API) and `POST /model/<id>/invoke` (Bedrock InvokeModel)
from a queue of scripted replies or a responder function, and records every call parsed. Bodies
follow the shape of the recorded responses in `shared/fixtures/anthropic/` (same keys, same usage
fields); when a reply leaves `usage` out, the server fills it in the way the API would: about four
characters per token, and prompt caching simulated per model (the prefix up to the last
`cache_control` block is written on first sight and read afterwards, if long enough to be cached).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from annapurna_resources.llm.pricing import price_for
from tests.http_replay import ReplayServer, Reply, Request

_ids = itertools.count(1)


@dataclass
class MessagesCall:
    backend: str  # "anthropic" or "bedrock"
    model: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def forced_tool(self) -> str | None:
        choice = self.body.get("tool_choice") or {}
        return choice.get("name") if choice.get("type") == "tool" else None

    @property
    def system_text(self) -> str:
        system = self.body.get("system") or ""
        return system if isinstance(system, str) else "".join(b.get("text", "") for b in system)

    @property
    def user_text(self) -> str:
        """Every text the caller sent in user turns, tool results included."""
        out: list[str] = []
        for message in self.body.get("messages", []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                out.append(content)
                continue
            for block in content:
                if block.get("type") == "text":
                    out.append(block["text"])
                elif block.get("type") == "tool_result":
                    inner = block.get("content")
                    out.append(inner if isinstance(inner, str) else json.dumps(inner))
        return "\n".join(out)


Responder = Callable[[MessagesCall], Reply]


def message_body(
    content: list[dict[str, Any]], model: str, stop_reason: str, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "id": f"msg_01Test{next(_ids):016d}",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def tool_use_reply(name: str, tool_input: Any, model: str = "", stop_reason: str = "tool_use", **kw: Any) -> Reply:
    block = {"type": "tool_use", "id": f"toolu_01Test{next(_ids):012d}", "name": name, "input": tool_input,
             "caller": {"type": "direct"}}
    return json_reply(message_body([block], model, stop_reason, kw.get("usage")))


def text_reply(text: str, model: str = "", stop_reason: str = "end_turn", **kw: Any) -> Reply:
    return json_reply(message_body([{"type": "text", "text": text}], model, stop_reason, kw.get("usage")))


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return Reply(status=status, headers={"Content-Type": "application/json", **(headers or {})}, body=data)


def error_reply(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_01Test"}
    return json_reply(body, status=status, headers=headers)


def estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, round(len(text) / 4))


class MessagesServer:
    """`with MessagesServer() as api: api.enqueue(reply, ...)`; `api.url` is the base URL for the client."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder
        self.queue: deque[Reply] = deque()
        self.calls: list[MessagesCall] = []
        self._cached_prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._server = ReplayServer(fallback=self._handle)

    @property
    def url(self) -> str:
        return self._server.url

    def enqueue(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    def __enter__(self) -> MessagesServer:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    def _handle(self, request: Request) -> Reply:
        if request.method != "POST":
            return error_reply(404, "not_found_error", f"{request.method} {request.path}")
        if request.path == "/v1/messages":
            backend = "anthropic"
        elif request.path.startswith("/model/") and request.path.endswith("/invoke"):
            backend = "bedrock"
        else:
            return error_reply(404, "not_found_error", f"no route {request.path}")
        try:
            body = json.loads(request.body)
        except json.JSONDecodeError:
            return error_reply(400, "invalid_request_error", "body is not JSON")
        model = body.get("model", "") if backend == "anthropic" else unquote(request.path.split("/")[2])
        call = MessagesCall(backend=backend, model=model, body=body, headers=request.headers)
        with self._lock:
            self.calls.append(call)
            reply = self.queue.popleft() if self.queue else None
        if reply is None:
            if self.responder is None:
                return error_reply(500, "api_error", "test server has no reply left")
            reply = self.responder(call)  # outside the lock: a slow responder must not block other calls
        with self._lock:
            return self._complete(reply, call)

    def _complete(self, reply: Reply, call: MessagesCall) -> Reply:
        """Fill in the model and a simulated `usage` where a 200 JSON reply leaves them out."""
        if reply.status != 200:
            return reply
        try:
            body = json.loads(reply.body)
        except (json.JSONDecodeError, TypeError):
            return reply
        if not isinstance(body, dict) or body.get("type") != "message":
            return reply
        if not body.get("model"):
            # Bedrock answers with the plain model name, the API with the id it was asked for.
            body["model"] = call.model.split("anthropic.")[-1].removesuffix("-v1:0")
        if "usage" not in body:
            body["usage"] = self.simulated_usage(call, body)
        return json_reply(body, headers={k: v for k, v in reply.headers.items() if k.lower() != "content-type"})

    def simulated_usage(self, call: MessagesCall, answer: dict[str, Any]) -> dict[str, Any]:
        # Order of the prompt as the API caches it: tools, then system, then messages.
        blocks: list[Any] = list(call.body.get("tools") or [])
        system = call.body.get("system")
        blocks += system if isinstance(system, list) else ([system] if system else [])
        for message in call.body.get("messages", []):
            content = message["content"]
            blocks += content if isinstance(content, list) else [content]
        breakpoint_at = max(
            (i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")), default=-1
        )
        prefix, rest = blocks[: breakpoint_at + 1], blocks[breakpoint_at + 1 :]
        prefix_tokens = estimate_tokens(prefix) if prefix else 0
        rest_tokens = estimate_tokens(rest) if rest else 0
        write = read = 0
        if prefix_tokens >= price_for(call.model).min_cacheable_tokens:
            key = hashlib.sha256((call.model + json.dumps(prefix, sort_keys=True)).encode()).hexdigest()
            if key in self._cached_prefixes:
                read = prefix_tokens
            else:
                write = prefix_tokens
                self._cached_prefixes.add(key)
        else:
            rest_tokens += prefix_tokens
        return {
            "input_tokens": rest_tokens,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
            "output_tokens": estimate_tokens(answer.get("content", [])),
            "service_tier": "standard",
        }


def fenced(code: str, preface: str = "Here is the program.") -> str:
    return f"{preface}\n\n```python\n{code.rstrip()}\n```\n"

