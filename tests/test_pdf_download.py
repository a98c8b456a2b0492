"""Streamed PDF downloads against a local HTTP server: caps, magic check, rate limits, resume."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from annapurna_resources.sources import PdfUnavailable
from annapurna_resources.sources.pdf_download import (
    download_pdf,
    looks_like_pdf,
    parse_retry_after,
    partial_path,
)
from tests.http_replay import ReplayServer, Reply, Request, range_reply

PDF = b"%PDF-1.5\n" + bytes(range(256)) * 800 + b"\n%%EOF\n"  # ~200 KiB, several chunks


@pytest.fixture
def sleeps() -> list[float]:
    return []


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("100000", now) == 120.0  # capped
    assert parse_retry_after("soon", now, default=3.0) == 3.0
    assert parse_retry_after(None, now, default=4.0) == 4.0


def test_looks_like_pdf() -> None:
    assert looks_like_pdf(b"%PDF-1.7\n...")
    assert looks_like_pdf(b"\r\n  %PDF-1.4")
    assert not looks_like_pdf(b"<!DOCTYPE html><html>")
    assert not looks_like_pdf(b"")


def test_downloads_a_real_pdf(shared_fixtures: Path, sleeps: list[float]) -> None:
    real = (shared_fixtures / "pdf" / "acl2020_s2orc_2020.acl-main.447.pdf").read_bytes()
    with ReplayServer({"/p.pdf": lambda r: range_reply(real, r)}) as srv:
        assert download_pdf(srv.url + "/p.pdf", 50_000_000, sleep=sleeps.append) == real
    assert sleeps == []


def test_html_error_page_with_status_200_is_rejected(sleeps: list[float]) -> None:
    page = "<!DOCTYPE html><html><body>Please log in " + "x" * 5000 + "</body></html>"
    with ReplayServer({"/p.pdf": (200, {"Content-Type": "text/html"}, page)}) as srv:
        with pytest.raises(PdfUnavailable, match="not a PDF"):
            download_pdf(srv.url + "/p.pdf", 10_000_000, sleep=sleeps.append)


def test_short_non_pdf_body_is_rejected() -> None:
    with ReplayServer({"/p.pdf": (200, {"Content-Type": "application/pdf"}, b"oops")}) as srv:
        with pytest.raises(PdfUnavailable, match="not a PDF"):
            download_pdf(srv.url + "/p.pdf", 10_000_000, sleep=lambda s: None)


def test_size_cap_from_header_and_from_stream() -> None:
    with ReplayServer({"/p.pdf": (200, {"Content-Type": "application/pdf"}, PDF)}) as srv:
        with pytest.raises(PdfUnavailable, match="cap"):
            download_pdf(srv.url + "/p.pdf", 10_000, sleep=lambda s: None)

    # One byte over the cap is already too much.
    with ReplayServer({"/p.pdf": (200, {"Content-Type": "application/pdf"}, PDF)}) as srv:
        with pytest.raises(PdfUnavailable, match="cap"):
            download_pdf(srv.url + "/p.pdf", len(PDF) - 1, sleep=lambda s: None)


def test_404_is_unavailable_without_retries() -> None:
    with ReplayServer({}) as srv:
        with pytest.raises(PdfUnavailable, match="HTTP 404"):
            download_pdf(srv.url + "/missing.pdf", 10_000_000, sleep=lambda s: None)
        assert len(srv.requests) == 1


def test_429_with_retry_after_then_success(sleeps: list[float]) -> None:
    calls = {"n": 0}

    def limited(request: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] <= 2:
            return Reply(429, {"Retry-After": "3", "Content-Type": "text/plain"}, b"Too Many Requests")
        return range_reply(PDF, request)

    with ReplayServer({"/p.pdf": limited}) as srv:
        assert download_pdf(srv.url + "/p.pdf", 10_000_000, sleep=sleeps.append) == PDF
    assert sleeps == [3.0, 3.0]


def test_persistent_rate_limit_gives_up() -> None:
    with ReplayServer({"/p.pdf": (503, {"Retry-After": "1"}, b"busy")}) as srv:
        with pytest.raises(PdfUnavailable, match="rate limited"):
            download_pdf(srv.url + "/p.pdf", 10_000_000, sleep=lambda s: None, max_attempts=3)
        assert len(srv.requests) == 3


def test_cut_transfer_resumes_with_range_in_the_same_call(sleeps: list[float]) -> None:
    calls = {"n": 0}

    def flaky(request: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(200, {"Content-Type": "application/pdf"}, PDF, cut_after=70_000)
        return range_reply(PDF, request)

    with ReplayServer({"/p.pdf": flaky}) as srv:
        assert download_pdf(srv.url + "/p.pdf", 10_000_000, sleep=sleeps.append) == PDF
        ranges = [r.headers.get("range") for r in srv.requests]
    assert ranges[0] is None
    assert ranges[1] is not None and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1][len("bytes=") : -1]) <= 70_000


def test_partial_file_survives_a_failed_call_and_is_resumed(tmp_path: Path) -> None:
    state = {"phase": "cut"}

    def server(request: Request) -> Reply:
        if state["phase"] == "cut":
            return Reply(200, {"Content-Type": "application/pdf"}, PDF, cut_after=100_000)
        return range_reply(PDF, request)

    with ReplayServer({"/p.pdf": server}) as srv:
        url = srv.url + "/p.pdf"
        with pytest.raises(PdfUnavailable, match="gave up"):
            download_pdf(url, 10_000_000, partial_dir=tmp_path, sleep=lambda s: None, max_attempts=2)
        saved = partial_path(tmp_path, url)
        assert saved.is_file() and 0 < saved.stat().st_size < len(PDF)
        assert PDF.startswith(saved.read_bytes())

        state["phase"] = "ok"
        held = saved.stat().st_size
        before = len(srv.requests)
        assert download_pdf(url, 10_000_000, partial_dir=tmp_path, sleep=lambda s: None) == PDF
        # Only the missing tail was asked for.
        assert srv.requests[before].headers["range"] == f"bytes={held}-"
        assert not partial_path(tmp_path, url).exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path) -> None:
    url_path = "/p.pdf"
    with ReplayServer({url_path: (200, {"Content-Type": "application/pdf"}, PDF)}) as srv:
        url = srv.url + url_path
        partial_path(tmp_path, url).write_bytes(PDF[:5000])
        assert download_pdf(url, 10_000_000, partial_dir=tmp_path, sleep=lambda s: None) == PDF
        assert srv.requests[0].headers["range"] == "bytes=5000-"
