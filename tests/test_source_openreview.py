"""OpenReview listings through the real openreview-py clients against a local server.

No real OpenReview dump with a clear licence exists in the shared fixtures, so the notes here are
built from the API's documented shapes: v2 wraps every content field as {"value": ...}, v1 is flat.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from annapurna_resources.sources import FetchOptions
from annapurna_resources.sources.openreview_source import (
    OpenReviewFetcher,
    decision_from_decision_note,
    field_value,
    note_to_paper,
    openreview_api_for,
)
from annapurna_resources.sources.parsing import SAFE_ID, SourceFetchError
from tests.http_replay import ReplayServer, Reply, Request

JSON = {"Content-Type": "application/json; charset=utf-8"}


def v2_note(i: int, venue: str = "ICLR 2024 poster", venueid: str = "ICLR.cc/2024/Conference", **drop: bool) -> dict:
    content: dict[str, Any] = {
        "title": {"value": f"Paper number {i}: sparse attention"},
        "authors": {"value": [f"Author {i}", "Second Author"]},
        "authorids": {"value": [f"~Author_{i}1", "~Second_Author1"]},
        "abstract": {"value": f"We study thing {i}.\nIt works."},
        "keywords": {"value": ["attention", "sparsity"]},
        "venue": {"value": venue},
        "venueid": {"value": venueid},
        "pdf": {"value": f"/pdf/{i:040x}.pdf"},
    }
    for name in drop:
        content.pop(name, None)
    return {
        "id": f"note{i:05d}",
        "forum": f"note{i:05d}",
        "number": i,
        "cdate": 1695000000000 + i,
        "pdate": 1705000000000 + i,
        "invitations": ["ICLR.cc/2024/Conference/-/Submission", "ICLR.cc/2024/Conference/-/Post_Submission"],
        "domain": "ICLR.cc/2024/Conference",
        "readers": ["everyone"],
        "writers": ["ICLR.cc/2024/Conference"],
        "signatures": [f"ICLR.cc/2024/Conference/Submission{i}/Authors"],
        "content": content,
    }


def v2_handler(notes: list[dict]) -> Any:
    """GET /notes?content.venueid=X&limit=N&offset=K as the v2 API answers it."""

    def handle(request: Request) -> Reply:
        venueid = request.param("content.venueid")
        selected = [n for n in notes if field_value(n["content"], "venueid") == venueid]
        offset = int(request.param("offset", "0") or 0)
        limit = int(request.param("limit", "1000") or 1000)
        return Reply(200, JSON, json.dumps({"notes": selected[offset : offset + limit], "count": len(selected)}))

    return handle


def test_which_api() -> None:
    assert openreview_api_for("iclr", 2023) == "v1" and openreview_api_for("iclr", 2024) == "v2"
    assert openreview_api_for("neurips", 2022) == "v1" and openreview_api_for("neurips", 2023) == "v2"
    assert openreview_api_for("neurips", 2019) is None
    assert openreview_api_for("icml", 2022) is None and openreview_api_for("icml", 2024) == "v2"
    assert openreview_api_for("mlsys", 2024) is None
    assert openreview_api_for("iclr", 2016) is None and openreview_api_for("iclr", 2017) == "v1"


def test_note_to_paper_v2_and_v1_shapes() -> None:
    paper, why = note_to_paper(v2_note(7, venue="ICLR 2024 spotlight"), "iclr", 2024, "http://api")
    assert why is None and paper is not None
    assert paper.paper_id == "openreview-note00007" and SAFE_ID.match(paper.paper_id)
    assert paper.title == "Paper number 7: sparse attention"
    assert paper.authors == ["Author 7", "Second Author"]
    assert paper.abstract == "We study thing 7. It works."
    assert paper.decision == "spotlight"
    assert paper.pdf_url == "http://api/pdf?id=note00007"
    assert paper.published is not None and paper.published.startswith("2024-01-11")
    assert paper.extra["keywords"] == ["attention", "sparsity"]

    v1 = {
        "id": "HkxV1", "forum": "HkxV1", "invitation": "ICLR.cc/2023/Conference/-/Blind_Submission",
        "content": {"title": "Flat Title", "authors": ["A. One"], "abstract": "flat", "venue": "ICLR 2023 notable top 25%",
                    "venueid": "ICLR.cc/2023/Conference", "pdf": "/pdf/abc.pdf"},
    }
    paper, _ = note_to_paper(v1, "iclr", 2023, "http://v1")
    assert paper is not None and paper.title == "Flat Title" and paper.decision == "spotlight"


def test_decision_notes() -> None:
    assert decision_from_decision_note("Accept (Oral)") == "oral"
    assert decision_from_decision_note("Accept (Poster)") == "poster"
    assert decision_from_decision_note("Accept: notable-top-25%") == "spotlight"
    assert decision_from_decision_note("Reject") is None
    assert decision_from_decision_note(None) is None


def test_v2_accepted_papers_through_the_client() -> None:
    notes = [v2_note(i, venue=("ICLR 2024 oral" if i % 10 == 0 else "ICLR 2024 poster")) for i in range(1, 1201)]
    notes += [v2_note(5000 + i, venue="Submitted to ICLR 2024", venueid="ICLR.cc/2024/Conference/Rejected_Submission")
              for i in range(50)]
    with ReplayServer({"/notes": v2_handler(notes)}) as srv:
        papers = list(OpenReviewFetcher(api_url=srv.url).fetch("iclr", 2024, FetchOptions()))
        requests = srv.hits("/notes")
    assert len(papers) == 1200  # two pages of the API, no rejected paper
    assert sum(p.decision == "oral" for p in papers) == 120
    assert all(p.venue == "iclr" and p.year == 2024 and p.source == "openreview" for p in papers)
    assert [r.param("offset") for r in requests] == ["0", "1000"]
    assert all(r.param("content.venueid") == "ICLR.cc/2024/Conference" for r in requests)


def test_offset_max_papers_and_search_term() -> None:
    notes = [v2_note(i) for i in range(1, 31)]
    notes[12]["content"]["title"] = {"value": "Mamba meets diffusion"}
    with ReplayServer({"/notes": v2_handler(notes)}) as srv:
        f = OpenReviewFetcher(api_url=srv.url)
        batch = list(f.fetch("iclr", 2024, FetchOptions(offset=10, max_papers=5)))
        assert srv.requests[-1].param("offset") == "10"
        found = list(f.fetch("iclr", 2024, FetchOptions(search_term="MAMBA diffusion")))
    assert [p.paper_id for p in batch] == [f"openreview-note{i:05d}" for i in range(11, 16)]
    assert [p.title for p in found] == ["Mamba meets diffusion"]


def test_notes_with_missing_fields() -> None:
    notes = [
        v2_note(1, title=True),          # no title: skipped, reason recorded
        v2_note(2, authors=True, abstract=True, pdf=True),  # thin but usable
        {"id": "bare", "content": {"venueid": {"value": "ICLR.cc/2024/Conference"}}},
        v2_note(3),
    ]
    with ReplayServer({"/notes": v2_handler(notes)}) as srv:
        f = OpenReviewFetcher(api_url=srv.url)
        papers = list(f.fetch("iclr", 2024, FetchOptions()))
    assert [p.paper_id for p in papers] == ["openreview-note00002", "openreview-note00003"]
    thin = papers[0]
    assert thin.authors == [] and thin.abstract == "" and thin.pdf_url is None
    assert any("note00001 has no title" in s for s in f.skipped) and any("bare" in s for s in f.skipped)


def test_v1_blind_submissions_with_decision_replies() -> None:
    def note(i: int, decision: str) -> dict:
        return {
            "id": f"v1n{i}", "forum": f"v1n{i}", "invitation": "ICLR.cc/2020/Conference/-/Blind_Submission",
            "cdate": 1569000000000, "content": {"title": f"Old paper {i}", "authors": [f"Old Author {i}"],
                                                "abstract": "old", "pdf": f"/pdf/{i}.pdf"},
            "details": {"directReplies": [
                {"invitation": f"ICLR.cc/2020/Conference/Paper{i}/-/Official_Comment", "content": {"comment": "hi"}},
                {"invitation": f"ICLR.cc/2020/Conference/Paper{i}/-/Decision", "content": {"decision": decision}},
            ]},
        }

    notes = [note(1, "Accept (Talk)"), note(2, "Reject"), note(3, "Accept (Spotlight)"), note(4, "Accept (Poster)")]

    def handle(request: Request) -> Reply:
        assert request.param("invitation") == "ICLR.cc/2020/Conference/-/Blind_Submission"
        assert request.param("details") == "directReplies"
        return Reply(200, JSON, json.dumps({"notes": notes, "count": len(notes)}))

    with ReplayServer({"/notes": handle}) as srv:
        papers = list(OpenReviewFetcher(api_v1_url=srv.url).fetch("iclr", 2020, FetchOptions()))
    assert [(p.title, p.decision) for p in papers] == [
        ("Old paper 1", "oral"), ("Old paper 3", "spotlight"), ("Old paper 4", "poster")]
    assert papers[0].pdf_url == f"{srv.url}/pdf?id=v1n1"


def test_429_with_retry_after_is_waited_out_by_the_client() -> None:
    notes = [v2_note(i) for i in range(1, 4)]
    inner = v2_handler(notes)
    calls = {"n": 0}

    def handle(request: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(429, {"Retry-After": "0", **JSON}, json.dumps({"name": "RateLimitError"}))
        return inner(request)

    with ReplayServer({"/notes": handle}) as srv:
        papers = list(OpenReviewFetcher(api_url=srv.url).fetch("iclr", 2024, FetchOptions()))
    assert len(papers) == 3 and calls["n"] == 2


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, {"Content-Type": "text/html"}, "<html><body>Maintenance</body></html>"),
        Reply(200, JSON, '{"notes": [{"id": "x", "content": {"title": {"val'),
        Reply(403, JSON, json.dumps({"name": "ForbiddenError", "message": "Forbidden"})),
    ],
    ids=["html-200", "truncated-json", "403"],
)
def test_bad_answers_become_source_errors(reply: Reply) -> None:
    with ReplayServer({"/notes": reply}) as srv:
        with pytest.raises(SourceFetchError, match="ICLR.cc/2024/Conference"):
            list(OpenReviewFetcher(api_url=srv.url).fetch("iclr", 2024, FetchOptions()))


def test_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENREVIEW_API_URL", "http://127.0.0.1:1/v2/")
    monkeypatch.setenv("OPENREVIEW_API_V1_URL", "http://127.0.0.1:1/v1")
    f = OpenReviewFetcher()
    assert (f.api_url, f.api_v1_url) == ("http://127.0.0.1:1/v2", "http://127.0.0.1:1/v1")
    monkeypatch.delenv("OPENREVIEW_API_URL")
    monkeypatch.delenv("OPENREVIEW_API_V1_URL")
    f = OpenReviewFetcher()
    assert (f.api_url, f.api_v1_url) == ("https://api2.openreview.net", "https://api.openreview.net")
