"""arXiv listing through the real `arxiv` client against recorded feeds served on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from annapurna_resources.sources import FetchOptions
from annapurna_resources.sources.arxiv_source import ArxivFetcher, build_arxiv_query, check_atom_feed
from annapurna_resources.sources.parsing import (
    SAFE_ID,
    SourceFetchError,
    arxiv_id_from_url,
    arxiv_paper_id,
    decision_from_venue,
    proceedings_paper_id,
    safe_component,
)
from tests.http_replay import ReplayServer, Reply, Request, paginated_atom_feed, split_atom_feed

ATOM = {"Content-Type": "application/atom+xml; charset=utf-8"}


@pytest.fixture
def feed100(shared_fixtures: Path) -> bytes:
    return (shared_fixtures / "arxiv" / "arxiv_query_testing_start0_max100.xml").read_bytes()


def fetcher(url: str, sleeps: list[float] | None = None, **kwargs: object) -> ArxivFetcher:
    return ArxivFetcher(
        api_url=url + "/api/query",
        delay_s=0.0,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        **kwargs,  # type: ignore[arg-type]
    )


# ---- pure helpers ---------------------------------------------------------------------------


def test_ids() -> None:
    assert arxiv_id_from_url("http://arxiv.org/abs/2401.01234v3") == ("2401.01234", "v3")
    assert arxiv_id_from_url("2202.12139") == ("2202.12139", None)
    assert arxiv_id_from_url("http://arxiv.org/abs/hep-th/9901001v1") == ("hep-th/9901001", "v1")
    assert arxiv_paper_id("http://arxiv.org/abs/2401.01234v3") == "arxiv-2401.01234"
    assert arxiv_paper_id("hep-th/9901001v2") == "arxiv-hep-th_9901001"
    with pytest.raises(ValueError):
        arxiv_id_from_url("https://arxiv.org/api/errors#incorrect_id_format_for_abc")
    assert safe_component("../../etc/passwd") == "etc-passwd"
    assert safe_component("") == "x"
    pid = proceedings_paper_id("mlsys", 2023, "Über-Fast Attention: 2× speed/𝜋!")
    assert pid == "mlsys2023-uber-fast-attention-2-speed" and SAFE_ID.match(pid)


def test_decisions() -> None:
    assert decision_from_venue("ICLR 2024 oral") == "oral"
    assert decision_from_venue("NeurIPS 2023 spotlight") == "spotlight"
    assert decision_from_venue("ICLR 2023 notable top 5%") == "oral"
    assert decision_from_venue("ICML 2024 Poster") == "poster"
    assert decision_from_venue("ICLR 2025 Conference Withdrawn Submission") is None
    assert decision_from_venue("Submitted to ICLR 2025") is None
    assert decision_from_venue("MLSys 2024") == "accepted"
    assert decision_from_venue(None) is None


def test_build_query() -> None:
    q = build_arxiv_query(2024, ["cs.LG", "stat.ML"], None)
    assert q == "(cat:cs.LG OR cat:stat.ML) AND submittedDate:[202401010000 TO 202412312359]"
    assert build_arxiv_query(2023, [], 'state "space" models').endswith('all:"state space models"')
    assert build_arxiv_query(2023, [], "mamba").endswith("AND all:mamba")


def test_check_atom_feed(feed100: bytes, shared_fixtures: Path) -> None:
    assert check_atom_feed(feed100) is None
    assert check_atom_feed((shared_fixtures / "arxiv" / "arxiv_empty_no_results.xml").read_bytes()) is None
    assert "truncated" in (check_atom_feed(feed100[: len(feed100) // 2]) or "")
    assert "not an Atom feed" in (check_atom_feed(b"<html><body>Rate exceeded.</body></html>") or "")
    assert check_atom_feed(b"") == "empty body"
    error = (shared_fixtures / "arxiv" / "arxiv_error_bad_id_http400.xml").read_bytes()
    assert "incorrect_id_format_for_abc" in (check_atom_feed(error) or "")


# ---- through the client and a local server --------------------------------------------------


def test_year_partition_from_the_real_feed(feed100: bytes) -> None:
    with ReplayServer({"/api/query": paginated_atom_feed(feed100)}) as srv:
        papers = list(fetcher(srv.url, page_size=30).fetch(2024, FetchOptions()))
        queries = [r for r in srv.requests if r.path == "/api/query"]
    # The recorded feed holds ten entries first published in 2024.
    assert len(papers) == 10
    assert all(p.year == 2024 and p.venue == "arxiv" and p.source == "arxiv" for p in papers)
    assert all(SAFE_ID.match(p.paper_id) and p.paper_id.startswith("arxiv-") for p in papers)
    assert all("v" not in p.paper_id.split(".")[-1] for p in papers)
    assert all(p.pdf_url and p.pdf_url.startswith("https://arxiv.org/pdf/") for p in papers)
    assert all(p.title and p.authors and p.abstract for p in papers)
    assert len({p.paper_id for p in papers}) == 10
    # The client paged through all 100 entries, 30 at a time, with the year and categories in the query.
    assert [q.param("start") for q in queries] == ["0", "30", "60", "90"]
    first = queries[0]
    assert first.param("max_results") == "30"
    assert "submittedDate:[202401010000 TO 202412312359]" in (first.param("search_query") or "")
    assert "cat:cs.LG" in (first.param("search_query") or "")
    assert first.param("sortBy") == "submittedDate"


def test_fields_of_a_known_entry(feed100: bytes) -> None:
    with ReplayServer({"/api/query": paginated_atom_feed(feed100)}) as srv:
        papers = list(fetcher(srv.url).fetch(2022, FetchOptions(search_term="testing")))
    by_id = {p.paper_id: p for p in papers}
    p = by_id["arxiv-2202.12139"]
    assert p.title == "Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques"
    assert p.authors == ["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"]
    assert p.arxiv_id == "2202.12139" and p.extra["version"] == "v1"
    assert p.published is not None and p.published.startswith("2022-02-24T15:05:19")
    assert p.extra["primary_category"] == "cs.SE" and "cs.LG" in p.extra["categories"]
    assert p.extra["doi"] == "10.1109/ICSTW55395.2022.00035"
    assert p.abstract.startswith("Deep Learning (DL) has revolutionized")


def test_max_papers_offset_and_pdf_mirror(feed100: bytes) -> None:
    with ReplayServer({"/api/query": paginated_atom_feed(feed100)}) as srv:
        all_2024 = list(fetcher(srv.url).fetch(2024, FetchOptions()))
        first3 = list(fetcher(srv.url).fetch(2024, FetchOptions(max_papers=3)))
        mirrored = list(fetcher(srv.url, pdf_base_url=srv.url + "/pdf").fetch(2024, FetchOptions(max_papers=1)))
        # offset is a position in the query's results: skipping 50 entries leaves the 2024 papers after them.
        later = list(fetcher(srv.url).fetch(2024, FetchOptions(offset=50)))
    assert [p.paper_id for p in first3] == [p.paper_id for p in all_2024[:3]]
    assert mirrored[0].pdf_url == f"{srv.url}/pdf/{mirrored[0].arxiv_id}{mirrored[0].extra['version']}"
    _head, entries, _tail = split_atom_feed(feed100)
    expected_later = sum(b"<published>2024" in e for e in entries[50:])
    assert len(later) == expected_later and 0 < expected_later < 10


def test_incremental_since(feed100: bytes) -> None:
    with ReplayServer({"/api/query": paginated_atom_feed(feed100)}) as srv:
        all_2024 = list(fetcher(srv.url).fetch(2024, FetchOptions()))
        cutoff = sorted(p.published or "" for p in all_2024)[4]
        newer = list(fetcher(srv.url).fetch(2024, FetchOptions(since=cutoff)))
    assert len(newer) == 5 and all((p.published or "") > cutoff for p in newer)


def test_empty_page_yields_nothing(shared_fixtures: Path) -> None:
    empty = (shared_fixtures / "arxiv" / "arxiv_empty_no_results.xml").read_bytes()
    with ReplayServer({"/api/query": (200, ATOM, empty)}) as srv:
        assert list(fetcher(srv.url).fetch(2024, FetchOptions())) == []
        assert len(srv.requests) == 1


def test_http_400_error_feed_fails_at_once(shared_fixtures: Path) -> None:
    error = (shared_fixtures / "arxiv" / "arxiv_error_bad_id_http400.xml").read_bytes()
    with ReplayServer({"/api/query": (400, ATOM, error)}) as srv:
        with pytest.raises(SourceFetchError, match="HTTP 400"):
            list(fetcher(srv.url).fetch(2024, FetchOptions()))
        assert len(srv.requests) == 1


def test_html_page_with_status_200_is_an_error_not_an_empty_result() -> None:
    html = b"<!DOCTYPE html><html><head><title>arXiv</title></head><body>Service unavailable</body></html>"
    sleeps: list[float] = []
    with ReplayServer({"/api/query": (200, {"Content-Type": "text/html"}, html)}) as srv:
        with pytest.raises(SourceFetchError, match="not an Atom feed"):
            list(fetcher(srv.url, sleeps, max_attempts=3).fetch(2024, FetchOptions()))
        assert len(srv.requests) == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_truncated_page_is_retried_and_listing_resumes(feed100: bytes) -> None:
    pages = paginated_atom_feed(feed100)
    state = {"cut": True}

    def server(request: Request) -> Reply:
        reply = pages(request)
        if request.param("start") == "50" and state["cut"]:
            state["cut"] = False
            body = reply.body if isinstance(reply.body, bytes) else reply.body.encode()
            return Reply(200, reply.headers, body[: len(body) // 2])
        return reply

    with ReplayServer({"/api/query": server}) as srv:
        papers = list(fetcher(srv.url, page_size=50).fetch(2024, FetchOptions()))
        starts = [r.param("start") for r in srv.requests]
    assert len(papers) == 10
    assert starts == ["0", "50", "50"]


def test_429_with_retry_after_then_success(feed100: bytes) -> None:
    pages = paginated_atom_feed(feed100)
    calls = {"n": 0}

    def server(request: Request) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return Reply(429, {"Retry-After": "7", "Content-Type": "text/plain"}, b"Rate exceeded.")
        return pages(request)

    sleeps: list[float] = []
    with ReplayServer({"/api/query": server}) as srv:
        papers = list(fetcher(srv.url, sleeps).fetch(2024, FetchOptions()))
    assert len(papers) == 10
    assert sleeps == [7.0]


def test_persistent_503_gives_up_with_partial_results_kept(feed100: bytes) -> None:
    pages = paginated_atom_feed(feed100)

    def server(request: Request) -> Reply:
        if request.param("start") != "0":
            return Reply(503, {"Retry-After": "1"}, b"busy")
        return pages(request)

    got = []
    with ReplayServer({"/api/query": server}) as srv:
        with pytest.raises(SourceFetchError, match="offset 50"):
            for paper in fetcher(srv.url, page_size=50, max_attempts=2).fetch(2024, FetchOptions()):
                got.append(paper)
    _head, entries, _tail = split_atom_feed(feed100)
    assert len(got) == sum(b"<published>2024" in e for e in entries[:50])


def test_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARXIV_API_URL", "http://127.0.0.1:9/mirror/query")
    f = ArxivFetcher()
    assert f.api_url == "http://127.0.0.1:9/mirror/query"
    url = f.client._format_url(__import__("arxiv").Search(query="x"), 0, 10)
    parts = urlsplit(url)
    assert parts.path == "/mirror/query" and parse_qs(parts.query)["search_query"] == ["x"]
    monkeypatch.delenv("ARXIV_API_URL")
    assert ArxivFetcher().api_url == "https://export.arxiv.org/api/query"
