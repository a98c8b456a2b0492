"""A tiny HTTP server on 127.0.0.1 that replays recorded responses, for tests of real HTTP clients.

Routes map a path (without the query string) to either a fixed `Reply`/tuple `(status, headers, body)`
or a callable `(Request) -> Reply`, so a test can serve a recorded arXiv feed, paginate it by the
`start` parameter, answer 429 once and then 200, or stream a PDF honouring `Range`. Every request is
recorded in `server.requests` so tests can assert what the client actually sent.

    with ReplayServer({"/api/query": (200, {"Content-Type": "application/atom+xml"}, feed)}) as srv:
        client.get(srv.url + "/api/query?search_query=x")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str = b""
    # Send only this many body bytes, then drop the connection (a download cut off halfway).
    cut_after: int | None = None


Handler = Callable[[Request], "Reply | tuple[int, Mapping[str, str], bytes | str]"]


def _as_reply(value: Any) -> Reply:
    if isinstance(value, Reply):
        return value
    status, headers, body = value
    return Reply(status=status, headers=dict(headers), body=body)


class ReplayServer:
    """Serve `routes` on an ephemeral port of 127.0.0.1 while the context is open.

    A path not in `routes` gets 404, unless `fallback` (a callable) is given.
    """

    def __init__(self, routes: Mapping[str, Any] | None = None, fallback: Handler | None = None) -> None:
        self.routes: dict[str, Any] = dict(routes or {})
        self.fallback = fallback
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None  # kept after exit so URLs built from it can still be compared

    @property
    def port(self) -> int:
        assert self._port is not None, "server not started"
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _dispatch(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        route = self.routes.get(request.path)
        if route is None and self.fallback is not None:
            route = self.fallback
        if route is None:
            return Reply(404, {"Content-Type": "text/plain"}, b"not found")
        return _as_reply(route(request) if callable(route) else route)

    def __enter__(self) -> ReplayServer:
        replay = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                try:
                    reply = replay._dispatch(request)
                except Exception as exc:  # a broken test handler should show up as a 500, not a hang
                    reply = Reply(500, {"Content-Type": "text/plain"}, f"handler error: {exc!r}")
                data = reply.body.encode() if isinstance(reply.body, str) else reply.body
                self.send_response(reply.status)
                headers = {k.lower(): v for k, v in reply.headers.items()}
                for name, value in reply.headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", headers.get("content-length", str(len(data))))
                if reply.cut_after is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.cut_after is not None:
                    self.wfile.write(data[: reply.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def range_reply(data: bytes, request: Request, content_type: str = "application/pdf") -> Reply:
    """Serve `data` honouring a `Range: bytes=N-` header, as a resumable download server does."""
    header = request.headers.get("range", "")
    if header.startswith("bytes=") and header.endswith("-"):
        start = int(header[len("bytes=") : -1])
        if start >= len(data):
            return Reply(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
        return Reply(
            206,
            {"Content-Type": content_type, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
            data[start:],
        )
    return Reply(200, {"Content-Type": content_type, "Accept-Ranges": "bytes"}, data)


def split_atom_feed(feed: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(head, entries, tail) of an Atom feed, each entry kept byte for byte as recorded."""
    first = feed.find(b"<entry>")
    if first < 0:
        close = feed.rfind(b"</feed>")
        return feed[:close], [], feed[close:]
    last = feed.rfind(b"</entry>") + len(b"</entry>")
    head, body, tail = feed[:first], feed[first:last], feed[last:]
    entries = [b"<entry>" + chunk for chunk in body.split(b"<entry>")[1:]]
    return head, entries, tail


def paginated_atom_feed(feed: bytes, total: int | None = None) -> Callable[[Request], Reply]:
    """Serve a recorded arXiv feed's entries page by page, honouring `start` and `max_results`,
    the way the arXiv API does; the header's totalResults says how many entries there are."""
    import re

    head, entries, tail = split_atom_feed(feed)
    count = len(entries) if total is None else total
    head = re.sub(rb"<opensearch:totalResults>\d+<", b"<opensearch:totalResults>%d<" % count, head)

    def handler(request: Request) -> Reply:
        start = int(request.param("start", "0") or 0)
        size = int(request.param("max_results", "100") or 100)
        page_head = re.sub(rb"<opensearch:startIndex>\d+<", b"<opensearch:startIndex>%d<" % start, head)
        page_head = re.sub(rb"<opensearch:itemsPerPage>\d+<", b"<opensearch:itemsPerPage>%d<" % size, page_head)
        body = page_head + b"".join(entries[start : start + size]) + tail
        return Reply(200, {"Content-Type": "application/atom+xml; charset=utf-8"}, body)

    return handler
