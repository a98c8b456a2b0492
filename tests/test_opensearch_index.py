"""OpenSearchIndex: request bodies (pure), the real opensearch-py client's wire traffic against a local
server (auth headers, NDJSON bulk, response parsing), and a live test when OPENSEARCH_URL is set."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator

import pytest

from annapurna_resources.index.opensearch import (
    INDEX_BODY,
    PAGE,
    BulkError,
    OpenSearchIndex,
    bulk_errors,
    bulk_upsert_body,
    keywords_body,
    mget_body,
    recent_body,
    scan_body,
    similar_body,
    status_body,
)
from annapurna_resources.settings import INDEX_NAME
from tests.http_replay import ReplayServer, Reply, Request

JSON = {"Content-Type": "application/json; charset=UTF-8"}

# ---- pure bodies ----------------------------------------------------------------------------


def test_mapping_covers_every_stage() -> None:
    props = INDEX_BODY["mappings"]["properties"]
    for name in ("paper_id", "venue", "year", "title", "authors", "abstract", "published", "pdf_key", "text_key",
                 "dedup_key", "aliases", "status", "judge_status", "judgment", "accepted", "score",
                 "code_status", "code_key", "code_sha256", "test_status", "test"):
        assert name in props, name
    for keyword in ("paper_id", "venue", "status", "judge_status", "code_status", "test_status", "dedup_key"):
        assert props[keyword]["type"] == "keyword"
    assert props["year"]["type"] == "integer" and props["published"]["type"] == "date"
    assert INDEX_BODY["mappings"]["dynamic"] is False
    assert INDEX_NAME == "research-papers-v2"


def test_bulk_upsert_is_a_partial_merge() -> None:
    body = bulk_upsert_body("idx", [{"paper_id": "a", "title": "T"}, {"paper_id": "b", "judge_status": "judged"}])
    assert body[0] == {"update": {"_index": "idx", "_id": "a", "retry_on_conflict": 3}}
    assert body[1] == {"doc": {"paper_id": "a", "title": "T"}, "doc_as_upsert": True}
    assert body[3]["doc"] == {"paper_id": "b", "judge_status": "judged"}
    with pytest.raises(ValueError):
        bulk_upsert_body("idx", [{"title": "no id"}])


def test_query_bodies() -> None:
    assert mget_body(["a", "b", "a"]) == {"ids": ["a", "b"]}
    assert scan_body("iclr", 2025, None)["query"] == {"bool": {"filter": [{"term": {"venue": "iclr"}},
                                                                         {"term": {"year": 2025}}]}}
    assert scan_body(None, None, "p9", size=10) == {"query": {"match_all": {}}, "sort": [{"paper_id": "asc"}],
                                                    "size": 10, "search_after": ["p9"]}
    kw = keywords_body(["sparse attention", "", "vision"], 5)
    assert [m["multi_match"]["query"] for m in kw["query"]["bool"]["must"]] == ["sparse attention", "vision"]
    assert all(m["multi_match"]["type"] == "phrase" for m in kw["query"]["bool"]["must"])
    assert keywords_body([], 5)["query"] == {"match_none": {}}
    assert recent_body(3)["sort"][0] == {"published": {"order": "desc", "missing": "_last"}}
    assert status_body("code_status", "generated", 7)["query"]["bool"]["filter"] == [{"term": {"code_status": "generated"}}]
    with pytest.raises(ValueError):
        status_body("title", "x", 1)
    sim = similar_body("graph networks", 5, exclude=["p1"], max_year=2024)["query"]["bool"]
    assert sim["must"][0]["more_like_this"]["like"] == "graph networks"
    assert sim["must_not"] == [{"term": {"status": "duplicate"}}, {"ids": {"values": ["p1"]}}]
    assert sim["filter"] == [{"range": {"year": {"lte": 2024}}}]
    assert similar_body("x", 1)["query"]["bool"]["must_not"] == [{"term": {"status": "duplicate"}}]


def test_bulk_errors_are_reported() -> None:
    ok = {"errors": False, "items": [{"update": {"_id": "a", "status": 200}}]}
    bad = {"errors": True, "items": [{"update": {"_id": "a", "status": 200}},
                                     {"update": {"_id": "b", "status": 400,
                                                 "error": {"type": "mapper_parsing_exception", "reason": "bad year"}}}]}
    assert bulk_errors(ok) == [] and bulk_errors(bad) == ["b: bad year"]


# ---- the real client against a local server -------------------------------------------------


class RecordingCluster:
    """Answers like OpenSearch would for the calls we make; records what the client sent."""

    def __init__(self, search_hits: list[list[dict]] | None = None, bulk_reply: dict | None = None) -> None:
        self.index_exists = False
        self.search_pages = list(search_hits or [])
        self.bulk_reply = bulk_reply

    def __call__(self, request: Request) -> Reply:
        path = request.path
        if request.method == "HEAD" and path == f"/{INDEX_NAME}":
            return Reply(200 if self.index_exists else 404, JSON, b"")
        if request.method == "PUT" and path == f"/{INDEX_NAME}":
            self.index_exists = True
            return Reply(200, JSON, json.dumps({"acknowledged": True, "index": INDEX_NAME}))
        if path == "/_bulk":
            lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
            items = [{"update": {"_index": INDEX_NAME, "_id": a["update"]["_id"], "status": 201, "result": "created"}}
                     for a in lines[::2]]
            return Reply(200, JSON, json.dumps(self.bulk_reply or {"took": 3, "errors": False, "items": items}))
        if path == f"/{INDEX_NAME}/_mget":
            ids = json.loads(request.body)["ids"]
            docs = [{"_index": INDEX_NAME, "_id": i, "found": i != "missing", **({"_source": {"paper_id": i}}
                     if i != "missing" else {})} for i in ids]
            return Reply(200, JSON, json.dumps({"docs": docs}))
        if path == f"/{INDEX_NAME}/_search":
            page = self.search_pages.pop(0) if self.search_pages else []
            body = {"took": 1, "timed_out": False, "hits": {"total": {"value": len(page), "relation": "eq"},
                                                           "hits": [{"_index": INDEX_NAME, "_id": d["paper_id"],
                                                                     "_score": 1.0, "_source": d} for d in page]}}
            return Reply(200, JSON, json.dumps(body))
        return Reply(400, JSON, json.dumps({"error": f"unexpected {request.method} {path}"}))


@pytest.fixture
def cluster() -> Iterator[tuple[ReplayServer, RecordingCluster]]:
    handler = RecordingCluster()
    with ReplayServer(fallback=handler) as srv:
        yield srv, handler


def test_creates_index_then_bulk_upserts_ndjson(cluster: tuple[ReplayServer, RecordingCluster]) -> None:
    srv, _ = cluster
    index = OpenSearchIndex(url=srv.url, refresh=True)
    docs = [{"paper_id": f"p{i}", "title": f"T{i}", "year": 2024} for i in range(3)]
    index.upsert(docs)
    index.upsert([{"paper_id": "p1", "judge_status": "judged"}])
    methods = [(r.method, r.path) for r in srv.requests]
    assert methods[:2] == [("HEAD", f"/{INDEX_NAME}"), ("PUT", f"/{INDEX_NAME}")]
    assert json.loads(srv.requests[1].body) == INDEX_BODY
    bulks = [r for r in srv.requests if r.path == "/_bulk"]
    assert len(bulks) == 2 and all(r.param("refresh") == "true" for r in bulks)
    assert bulks[0].headers["content-type"].startswith("application/")
    lines = [json.loads(x) for x in bulks[0].body.decode().splitlines()]
    assert lines == bulk_upsert_body(INDEX_NAME, docs)
    second = [json.loads(x) for x in bulks[1].body.decode().splitlines()]
    assert second[1] == {"doc": {"paper_id": "p1", "judge_status": "judged"}, "doc_as_upsert": True}
    assert "authorization" not in srv.requests[0].headers


def test_bulk_refusals_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = RecordingCluster(bulk_reply={"took": 1, "errors": True, "items": [
        {"update": {"_id": "p0", "status": 400, "error": {"type": "x", "reason": "broken doc"}}}]})
    handler.index_exists = True
    with ReplayServer(fallback=handler) as srv:
        with pytest.raises(BulkError, match="p0: broken doc"):
            OpenSearchIndex(url=srv.url).upsert([{"paper_id": "p0"}])


def test_reads_parse_responses(cluster: tuple[ReplayServer, RecordingCluster]) -> None:
    srv, handler = cluster
    handler.index_exists = True
    index = OpenSearchIndex(url=srv.url)
    assert index.get_many(["a", "missing", "a"]) == {"a": {"paper_id": "a"}}
    assert json.loads(srv.requests[-1].body) == {"ids": ["a", "missing"]}

    full = [{"paper_id": f"p{i:05d}", "venue": "iclr", "year": 2025} for i in range(PAGE)]
    handler.search_pages = [full, [{"paper_id": "p99999", "venue": "iclr", "year": 2025}]]
    docs = list(index.iter_docs("iclr", 2025))
    assert len(docs) == PAGE + 1
    searches = [json.loads(r.body) for r in srv.requests if r.path.endswith("/_search")]
    assert searches[0] == scan_body("iclr", 2025, None) and searches[1] == scan_body("iclr", 2025, "p00999")

    handler.search_pages = [[{"paper_id": "x", "venue": "iclr", "year": 2025, "title": "Graph nets"}]]
    assert index.by_status("judge_status", "judged")[0]["title"] == "Graph nets"
    assert json.loads(srv.requests[-1].body) == status_body("judge_status", "judged", 1000)
    assert index.similar("   ") == []


def test_basic_auth_header() -> None:
    handler = RecordingCluster()
    handler.index_exists = True
    with ReplayServer(fallback=handler) as srv:
        OpenSearchIndex(url=srv.url, auth="basic", username="admin", password="s3cret").recent(2)
        auth = srv.requests[-1].headers["authorization"]
    assert auth == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    with pytest.raises(ValueError):
        OpenSearchIndex(url="http://127.0.0.1:1", auth="basic").client()
    with pytest.raises(ValueError):
        OpenSearchIndex(url="http://127.0.0.1:1", auth="kerberos").client()


def test_sigv4_signed_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    handler = RecordingCluster()
    handler.index_exists = True
    with ReplayServer(fallback=handler) as srv:
        OpenSearchIndex(url=srv.url, auth="sigv4", region="eu-west-1").upsert([{"paper_id": "p"}])
        bulk = srv.hits("/_bulk")[0]
    auth = bulk.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/es/aws4_request" in auth
    assert "x-amz-date" in bulk.headers and "x-amz-content-sha256" in bulk.headers


# ---- a real cluster, when one is configured ------------------------------------------------


@pytest.fixture
def live_index() -> Iterator[OpenSearchIndex]:
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("OPENSEARCH_URL not set")
    index = OpenSearchIndex(
        url=url,
        index_name=f"annapurna-test-{uuid.uuid4().hex[:8]}",
        auth=os.environ.get("OPENSEARCH_AUTH", "none"),
        username=os.environ.get("OPENSEARCH_USERNAME"),
        password=os.environ.get("OPENSEARCH_PASSWORD"),
        verify_certs=os.environ.get("OPENSEARCH_VERIFY_CERTS", "1") != "0",
        refresh=True,
    )
    try:
        yield index
    finally:
        index.client().indices.delete(index=index.index_name, ignore_unavailable=True)


def test_live_cluster_queries(live_index: OpenSearchIndex) -> None:
    docs = [
        {"paper_id": "p1", "venue": "iclr", "year": 2024, "title": "Sparse Attention for Long Sequences",
         "authors": ["Ada Lovelace"], "abstract": "We make attention sparse and fast.", "published": "2024-01-05",
         "status": "ok", "dedup_key": "sparse attention for long sequences|lovelace"},
        {"paper_id": "p2", "venue": "arxiv", "year": 2024, "title": "Graph Networks at Scale",
         "authors": ["Alan Turing"], "abstract": "Message passing on huge graphs.", "published": "2024-03-01",
         "status": "ok"},
        {"paper_id": "p3", "venue": "iclr", "year": 2023, "title": "Diffusion for Graphs",
         "authors": ["Grace Hopper"], "abstract": "Graph diffusion models generate molecules.",
         "published": "2023-05-01", "status": "error"},
    ]
    live_index.upsert(docs)
    live_index.upsert([{"paper_id": "p1", "judge_status": "judged", "accepted": True, "score": 0.9}])
    merged = live_index.get("p1")
    assert merged is not None and merged["title"] == docs[0]["title"] and merged["judge_status"] == "judged"
    assert sorted(d["paper_id"] for d in live_index.iter_docs("iclr")) == ["p1", "p3"]
    assert [d["paper_id"] for d in live_index.iter_docs("iclr", 2023)] == ["p3"]
    assert live_index.search("sparse attention")[0]["paper_id"] == "p1"
    assert live_index.by_title("Graph Networks at Scale")[0]["paper_id"] == "p2"
    assert [d["paper_id"] for d in live_index.by_author("Grace Hopper")] == ["p3"]
    assert [d["paper_id"] for d in live_index.by_keywords(["graph", "molecules"])] == ["p3"]
    assert [d["paper_id"] for d in live_index.recent(2)] == ["p2", "p1"]
    assert [d["paper_id"] for d in live_index.by_status("status", "error")] == ["p3"]
    assert [d["paper_id"] for d in live_index.by_dedup_key("sparse attention for long sequences|lovelace")] == ["p1"]
    assert "p2" not in [d["paper_id"] for d in live_index.similar("graph message passing", exclude=["p2"])]
    assert live_index.counts()["partitions"]["iclr|2024"]["judged"] == 1


def test_aws_profile_picks_opensearch_and_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    from annapurna_assets.resources import build_index, build_store
    from annapurna_resources.index.sqlite import SqliteIndex
    from annapurna_resources.object_store.s3 import S3ObjectStore

    monkeypatch.setenv("ANNAPURNA_PROFILE", "aws")
    monkeypatch.delenv("ANNAPURNA_INDEX", raising=False)
    monkeypatch.setenv("OPENSEARCH_URL", "https://search-papers.eu-west-1.es.amazonaws.com")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    index = build_index()
    assert isinstance(index, OpenSearchIndex)
    assert (index.url, index.auth, index.index_name) == (os.environ["OPENSEARCH_URL"], "sigv4", "research-papers-v2")
    store = build_store()
    assert isinstance(store, S3ObjectStore) and store.s3.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.setenv("ANNAPURNA_INDEX", "sqlite")
    assert isinstance(build_index(), SqliteIndex)
    monkeypatch.delenv("ANNAPURNA_INDEX")
    monkeypatch.delenv("OPENSEARCH_URL")
    with pytest.raises(ValueError, match="OPENSEARCH_URL"):
        build_index()


def test_counts_from_one_aggregation() -> None:
    from annapurna_resources.index.opensearch import counts_body, parse_counts_page

    body = counts_body()
    assert body["size"] == 0
    sources = body["aggs"]["parts"]["composite"]["sources"]
    assert [next(iter(s)) for s in sources] == ["venue", "year"]
    assert counts_body({"venue": "iclr", "year": 2024})["aggs"]["parts"]["composite"]["after"] == {
        "venue": "iclr", "year": 2024}

    def bucket(venue: str, year: int, n: int, **c: int) -> dict:
        names = ("errors", "judged", "accepted", "generated", "tested", "passed")
        return {"key": {"venue": venue, "year": year}, "doc_count": n,
                **{k: {"doc_count": c.get(k, 0)} for k in names}}

    response = {"took": 2, "hits": {"total": {"value": 15, "relation": "eq"}, "hits": []},
                "aggregations": {"parts": {"after_key": {"venue": "iclr", "year": 2025},
                                           "buckets": [bucket("arxiv", 2024, 10, judged=4, accepted=1),
                                                       bucket("iclr", 2025, 5, errors=1, judged=5, accepted=3,
                                                              generated=3, tested=3, passed=2)]}}}
    handler = RecordingCluster()
    handler.index_exists = True

    def answer(request: Request) -> Reply:
        if request.path.endswith("/_search") and json.loads(request.body).get("size") == 0:
            return Reply(200, JSON, json.dumps(response))
        return handler(request)

    with ReplayServer(fallback=answer) as srv:
        counts = OpenSearchIndex(url=srv.url).counts()
        assert len(srv.hits(f"/{INDEX_NAME}/_search")) == 1  # fewer buckets than a page: no second request
    assert counts["partitions"]["iclr|2025"] == {"papers": 5, "judged": 5, "accepted": 3, "generated": 3,
                                                 "tested": 3, "passed": 2, "failed": 1, "errors": 1}
    assert counts["partitions"]["arxiv|2024"]["papers"] == 10
    assert (counts["papers"], counts["judged"], counts["failed"], counts["errors"]) == (15, 9, 1, 1)
    assert list(counts["partitions"]) == ["arxiv|2024", "iclr|2025"]
    assert parse_counts_page({"aggregations": {"parts": {"buckets": []}}}) == ({}, None)
