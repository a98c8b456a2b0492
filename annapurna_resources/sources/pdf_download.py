"""Streamed, capped, resumable PDF downloads.

A download never holds more than `max_bytes`, gives up early on a body that does not start like a
PDF (an HTML error or login page served with status 200 is the usual case), waits out 429/503 with
the server's Retry-After, and continues a cut-off transfer with a `Range` request instead of starting
over: OpenReview in particular rate-limits guests on PDFs, and big PDFs over slow links get cut.
Every failure ends as `PdfUnavailable` with a reason a person can read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import requests

from annapurna_resources.sources import PdfUnavailable

USER_AGENT = "annapurna/0.1 (+https://github.com/annapurna; research paper reproduction)"
# The PDF spec lets readers accept up to 1024 bytes of junk before the header; real servers send none.
MAGIC_WINDOW = 1024
MAX_RETRY_AFTER_S = 120.0
CHUNK = 64 * 1024


def looks_like_pdf(head: bytes) -> bool:
    # Same rule as text extraction applies later: only whitespace may precede the header.
    return head[:MAGIC_WINDOW].lstrip().startswith(b"%PDF-")


def parse_retry_after(value: str | None, now: datetime | None = None, default: float = 5.0) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped."""
    if not value:
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def partial_path(partial_dir: Path, url: str) -> Path:
    return partial_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.part"


def download_pdf(
    url: str,
    max_bytes: int,
    *,
    session: requests.Session | None = None,
    partial_dir: Path | None = None,
    timeout_s: float = 60.0,
    max_attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The PDF at `url`, or PdfUnavailable.

    With `partial_dir`, bytes received so far survive a failed call in `<dir>/<hash>.part`, and the
    next call for the same URL asks only for the rest.
    """
    if not url:
        raise PdfUnavailable("no PDF URL")
    http = session or requests.Session()
    part = partial_path(partial_dir, url) if partial_dir is not None else None
    buffer = bytearray(part.read_bytes()) if part is not None and part.is_file() else bytearray()
    if len(buffer) > max_bytes:
        buffer.clear()
    last_error = "no attempt made"
    try:
        for attempt in range(max_attempts):
            request_headers = {"User-Agent": USER_AGENT, **(headers or {})}
            if buffer:
                request_headers["Range"] = f"bytes={len(buffer)}-"
            try:
                with http.get(url, headers=request_headers, stream=True, timeout=timeout_s) as resp:
                    if resp.status_code in (429, 503):
                        wait = parse_retry_after(resp.headers.get("Retry-After"), default=2.0 * 2**attempt)
                        last_error = f"HTTP {resp.status_code} (rate limited), waited {wait:.0f}s"
                        sleep(wait)
                        continue
                    if resp.status_code == 416 and buffer:
                        # We already hold every byte the server has; the range is past its end.
                        break
                    if resp.status_code == 200 and buffer:
                        buffer.clear()  # server ignored Range: start over
                    elif resp.status_code not in (200, 206):
                        raise PdfUnavailable(f"HTTP {resp.status_code} for {url}")
                    total = _declared_total(resp, len(buffer))
                    if total is not None and total > max_bytes:
                        raise PdfUnavailable(f"PDF is {total} bytes, over the {max_bytes}-byte cap")
                    for chunk in resp.iter_content(CHUNK):
                        buffer.extend(chunk)
                        if len(buffer) > max_bytes:
                            raise PdfUnavailable(f"PDF exceeds the {max_bytes}-byte cap")
                        # Stop as soon as the first KiB shows this is not a PDF (an HTML page, say).
                        if len(buffer) >= MAGIC_WINDOW and not looks_like_pdf(bytes(buffer[:MAGIC_WINDOW])):
                            ctype = resp.headers.get("Content-Type", "?")
                            raise PdfUnavailable(f"not a PDF (Content-Type {ctype}) at {url}")
                    if total is not None and len(buffer) < total:
                        last_error = f"transfer cut at {len(buffer)} of {total} bytes"
                        continue
                    break
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                # Keep what arrived; the next attempt asks for the rest.
                last_error = f"{type(exc).__name__}: {exc}"
                sleep(min(2.0 * 2**attempt, 30.0))
                continue
        else:
            raise PdfUnavailable(f"gave up after {max_attempts} attempts: {last_error}")
    except PdfUnavailable:
        if part is not None:
            _save_partial(part, buffer if looks_like_pdf(bytes(buffer[:MAGIC_WINDOW])) else bytearray())
        raise
    data = bytes(buffer)
    if not looks_like_pdf(data[:MAGIC_WINDOW]):
        if part is not None:
            part.unlink(missing_ok=True)
        raise PdfUnavailable(f"not a PDF ({len(data)} bytes) at {url}")
    if part is not None:
        part.unlink(missing_ok=True)
    return data


def _declared_total(resp: requests.Response, already: int) -> int | None:
    """Full size of the file from Content-Range (206) or Content-Length (200), if the server says."""
    content_range = resp.headers.get("Content-Range", "")
    if resp.status_code == 206 and "/" in content_range:
        size = content_range.rsplit("/", 1)[1].strip()
        return int(size) if size.isdigit() else None
    length = resp.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + (already if resp.status_code == 206 else 0)
    return None


def _save_partial(part: Path, data: bytearray) -> None:
    if not data:
        part.unlink(missing_ok=True)
        return
    part.parent.mkdir(parents=True, exist_ok=True)
    tmp = part.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    tmp.replace(part)
