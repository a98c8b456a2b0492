"""The production paper index: OpenSearch (Amazon OpenSearch Service or self-hosted) via opensearch-py.

Index `research-papers-v2` with an explicit mapping; each stage's upsert is a partial-document
update with `doc_as_upsert`, so a stage never erases another stage's fields. Every request body is
built by a pure function below, so the queries are tested without a server; the client only sends
them. Auth: SigV4 (`AWSV4SignerAuth`, credentials from the usual boto3 chain) for Amazon OpenSearch,
basic auth or none for a self-hosted cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from annapurna_resources.index import STAGE_KEYS, PaperDoc, PaperIndex
from annapurna_resources.settings import INDEX_NAME

STATUS_FIELDS = ("status", "judge_status", "code_status", "test_status")
PAGE = 1000

_KEYWORD = {"type": "keyword"}
_TEXT_WITH_KEYWORD = {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 512}}}

# Explicit, so a field's type is what we say, not what the first document happened to hold.
# `dynamic: false` keeps unknown fields in _source (returned as written) without indexing them, so a
# new field from one stage can never break indexing for the others.
INDEX_BODY: dict[str, Any] = {
    "settings": {
        "index": {
            "number_of_shards": 1,
            "number_of_replicas": 1,
            # A malformed value (a date that is not a date) is skipped, not a rejected document.
            "mapping": {"ignore_malformed": True},
        },
    },
    "mappings": {
        "dynamic": False,
        "properties": {
            # papers
            "paper_id": _KEYWORD,
            "venue": _KEYWORD,
            "year": {"type": "integer"},
            "title": _TEXT_WITH_KEYWORD,
            "authors": _TEXT_WITH_KEYWORD,
            "abstract": {"type": "text"},
            "published": {"type": "date", "format": "strict_date_optional_time||yyyy-MM-dd||yyyy"},
            "url": _KEYWORD,
            "pdf_url": _KEYWORD,
            "source": _KEYWORD,
            "arxiv_id": _KEYWORD,
            "decision": _KEYWORD,
            "aliases": _KEYWORD,
            "pdf_key": _KEYWORD,
            "text_key": _KEYWORD,
            "content_hash": _KEYWORD,
            "dedup_key": _KEYWORD,
            "status": _KEYWORD,
            "error": {"type": "text"},
            "duplicate_of": _KEYWORD,
            # judgments
            "judge_status": _KEYWORD,
            "judge_key": _KEYWORD,
            "relevant": {"type": "boolean"},
            "accepted": {"type": "boolean"},
            "score": {"type": "float"},
            "judgment": {
                "type": "object",
                "dynamic": False,
                "properties": {
                    "relevant": {"type": "boolean"},
                    "novelty": {"type": "float"},
                    "score": {"type": "float"},
                    "reasons": {"type": "text"},
                    "model": _KEYWORD,
                    "prompt_version": _KEYWORD,
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                    "cost_usd": {"type": "float"},
                },
            },
            # generated code
            "code_status": _KEYWORD,
            "code_key": _KEYWORD,
            "code_sha256": _KEYWORD,
            "code": {
                "type": "object",
                "dynamic": False,
                "properties": {
                    "dataset": _KEYWORD,
                    "generator": _KEYWORD,
                    "model": _KEYWORD,
                    "prompt_version": _KEYWORD,
                    "repair_rounds": {"type": "integer"},
                    "cost_usd": {"type": "float"},
                },
            },
            # test results
            "test_status": _KEYWORD,
            "test": {
                "type": "object",
                "dynamic": False,
                "properties": {
                    "status": _KEYWORD,
                    "exit_code": {"type": "integer"},
                    "wall_time_s": {"type": "float"},
                    "device": _KEYWORD,
                    "metrics": {"type": "object", "enabled": False},
                    "stdout_key": _KEYWORD,
                    "stderr_key": _KEYWORD,
                },
            },
        },
    },
}


# ---- pure request-body builders -------------------------------------------------------------


def bulk_upsert_body(index: str, docs: list[PaperDoc]) -> list[dict[str, Any]]:
    """NDJSON lines for `_bulk`: a partial update per paper that creates the paper when it is new."""
    lines: list[dict[str, Any]] = []
    for doc in docs:
        paper_id = doc.get("paper_id")
        if not paper_id:
            raise ValueError(f"document without paper_id: {sorted(doc)}")
        # retry_on_conflict: two stages may update one paper at once; the merge is safe to repeat.
        lines.append({"update": {"_index": index, "_id": paper_id, "retry_on_conflict": 3}})
        lines.append({"doc": doc, "doc_as_upsert": True})
    return lines


def mget_body(paper_ids: Iterable[str]) -> dict[str, Any]:
    return {"ids": list(dict.fromkeys(paper_ids))}


def filter_query(venue: str | None = None, year: int | None = None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if venue is not None:
        filters.append({"term": {"venue": venue}})
    if year is not None:
        filters.append({"term": {"year": int(year)}})
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def scan_body(venue: str | None, year: int | None, after: str | None, size: int = PAGE) -> dict[str, Any]:
    """One page of every paper in paper_id order; `search_after` continues where the last page ended."""
    body: dict[str, Any] = {"query": filter_query(venue, year), "sort": [{"paper_id": "asc"}], "size": size}
    if after is not None:
        body["search_after"] = [after]
    return body


def search_body(query: str, limit: int) -> dict[str, Any]:
    return {
        "query": {
            "multi_match": {
                "query": query,
                "fields": ["title^3", "abstract", "authors^2"],
                "type": "best_fields",
            }
        },
        "size": limit,
    }


def title_body(title: str, limit: int) -> dict[str, Any]:
    return {
        "query": {
            "bool": {
                "should": [
                    {"term": {"title.raw": {"value": title, "boost": 10}}},
                    {"match_phrase": {"title": {"query": title, "boost": 3}}},
                ],
                "must": [{"match": {"title": {"query": title, "operator": "and"}}}],
            }
        },
        "size": limit,
    }


def author_body(author: str, limit: int) -> dict[str, Any]:
    return {"query": {"match_phrase": {"authors": author}}, "size": limit}


def keywords_body(keywords: list[str], limit: int) -> dict[str, Any]:
    musts = [{"multi_match": {"query": k, "fields": ["title", "abstract"], "type": "phrase"}} for k in keywords if k.strip()]
    return {"query": {"bool": {"must": musts}} if musts else {"match_none": {}}, "size": limit}


def recent_body(limit: int) -> dict[str, Any]:
    return {
        "query": {"match_all": {}},
        "sort": [{"published": {"order": "desc", "missing": "_last"}}, {"paper_id": "asc"}],
        "size": limit,
    }


def status_body(field: str, status: str, limit: int) -> dict[str, Any]:
    if field not in STATUS_FIELDS:
        raise ValueError(f"field must be one of {STATUS_FIELDS}, not {field!r}")
    return {"query": {"bool": {"filter": [{"term": {field: status}}]}}, "sort": [{"paper_id": "asc"}], "size": limit}


def dedup_body(dedup_key: str) -> dict[str, Any]:
    return {"query": {"bool": {"filter": [{"term": {"dedup_key": dedup_key}}]}}, "size": 100}


def similar_body(text: str, limit: int, exclude: Iterable[str] = (), max_year: int | None = None) -> dict[str, Any]:
    bool_query: dict[str, Any] = {
        "must": [
            {
                "more_like_this": {
                    "fields": ["title", "abstract"],
                    "like": text,
                    # Our "documents" are one abstract: every term counts, however rare in the text.
                    "min_term_freq": 1,
                    "min_doc_freq": 1,
                    "max_query_terms": 50,
                    "minimum_should_match": "10%",
                }
            }
        ]
    }
    # A duplicate is the same paper as its canonical record; it must not count as prior work twice.
    bool_query["must_not"] = [{"term": {"status": "duplicate"}}]
    excluded = list(exclude)
    if excluded:
        bool_query["must_not"].append({"ids": {"values": excluded}})
    if max_year is not None:
        bool_query["filter"] = [{"range": {"year": {"lte": int(max_year)}}}]
    return {"query": {"bool": bool_query}, "size": limit}


def counts_body(after: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage counts per venue/year in one aggregation, the same rules as `stage_counts`."""
    composite: dict[str, Any] = {
        "size": 1000,
        "sources": [{"venue": {"terms": {"field": "venue"}}}, {"year": {"terms": {"field": "year"}}}],
    }
    if after is not None:
        composite["after"] = after
    return {
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            "parts": {
                "composite": composite,
                "aggs": {
                    "errors": {"filter": {"bool": {"filter": [{"exists": {"field": "status"}}],
                                                   "must_not": [{"term": {"status": "ok"}}]}}},
                    "judged": {"filter": {"term": {"judge_status": "judged"}}},
                    "accepted": {"filter": {"bool": {"filter": [{"term": {"judge_status": "judged"}},
                                                                {"term": {"accepted": True}}]}}},
                    "generated": {"filter": {"term": {"code_status": "generated"}}},
                    "tested": {"filter": {"exists": {"field": "test_status"}}},
                    "passed": {"filter": {"term": {"test_status": "passed"}}},
                },
            }
        },
    }


def parse_counts_page(response: dict[str, Any]) -> tuple[dict[str, dict[str, int]], dict[str, Any] | None]:
    """({'venue|year': counts}, the key to continue after, or None on the last page)."""
    parts = response.get("aggregations", {}).get("parts", {})
    out: dict[str, dict[str, int]] = {}
    for bucket in parts.get("buckets", []):
        key = f"{bucket['key']['venue']}|{int(bucket['key']['year'])}"
        c = {name: int(bucket[name]["doc_count"]) for name in ("judged", "accepted", "generated", "tested", "passed")}
        out[key] = {"papers": int(bucket["doc_count"]), **c, "failed": c["tested"] - c["passed"],
                    "errors": int(bucket["errors"]["doc_count"])}
    after = parts.get("after_key") if parts.get("buckets") else None
    return out, after


def hits(response: dict[str, Any]) -> list[PaperDoc]:
    return [hit["_source"] for hit in response.get("hits", {}).get("hits", [])]


class BulkError(Exception):
    """OpenSearch refused some documents of a bulk upsert."""


def bulk_errors(response: dict[str, Any]) -> list[str]:
    if not response.get("errors"):
        return []
    problems = []
    for item in response.get("items", []):
        result = next(iter(item.values()), {})
        if result.get("error"):
            error = result["error"]
            reason = error.get("reason") if isinstance(error, dict) else error
            problems.append(f"{result.get('_id')}: {reason}")
    return problems


# ---- the resource ---------------------------------------------------------------------------


class OpenSearchIndex(PaperIndex):
    url: str = Field(description="https://search-domain.region.es.amazonaws.com or http://host:9200")
    index_name: str = INDEX_NAME
    auth: str = Field(default="none", description="none | basic | sigv4")
    username: str | None = None
    password: str | None = Field(default=None, description="use dg.EnvVar('OPENSEARCH_PASSWORD')")
    region: str | None = Field(default=None, description="for sigv4; default: the boto3 session's region")
    service: str = Field(default="es", description="es for OpenSearch Service, aoss for Serverless")
    verify_certs: bool = True
    refresh: bool = Field(default=False, description="refresh after writes (tests); production leaves it off")
    timeout_s: int = 30

    _client: Any = PrivateAttr(default=None)
    _index_ready: bool = PrivateAttr(default=False)

    def client(self) -> Any:
        if self._client is None:
            from opensearchpy import OpenSearch, RequestsHttpConnection

            kwargs: dict[str, Any] = {
                "hosts": [self.url],
                "verify_certs": self.verify_certs,
                "timeout": self.timeout_s,
                "connection_class": RequestsHttpConnection,
            }
            if self.auth == "basic":
                password = self.password
                if isinstance(password, dg.EnvVar):
                    # Used outside a Dagster run (the CLI), the EnvVar is not resolved for us.
                    password = os.environ.get(str(password))
                if not self.username or password is None:
                    raise ValueError("auth=basic needs username and password")
                kwargs["http_auth"] = (self.username, password)
            elif self.auth == "sigv4":
                import boto3
                from opensearchpy import AWSV4SignerAuth

                session = boto3.Session()
                credentials = session.get_credentials()
                region = self.region or session.region_name
                if credentials is None or not region:
                    raise ValueError("auth=sigv4 needs AWS credentials and a region")
                kwargs["http_auth"] = AWSV4SignerAuth(credentials, region, self.service)
            elif self.auth != "none":
                raise ValueError(f"auth must be none, basic or sigv4, not {self.auth!r}")
            self._client = OpenSearch(**kwargs)
        return self._client

    def ensure_index(self) -> None:
        if self._index_ready:
            return
        client = self.client()
        if not client.indices.exists(index=self.index_name):
            from opensearchpy.exceptions import RequestError

            try:
                client.indices.create(index=self.index_name, body=INDEX_BODY)
            except RequestError as exc:
                # Another process created it between our check and our create.
                if "resource_already_exists_exception" not in str(exc):
                    raise
        self._index_ready = True

    def _search(self, body: dict[str, Any]) -> list[PaperDoc]:
        self.ensure_index()
        return hits(self.client().search(index=self.index_name, body=body))

    def upsert(self, docs: list[PaperDoc]) -> None:
        if not docs:
            return
        self.ensure_index()
        params = {"refresh": "true"} if self.refresh else {}
        for start in range(0, len(docs), 500):
            response = self.client().bulk(body=bulk_upsert_body(self.index_name, docs[start : start + 500]), **params)
            problems = bulk_errors(response)
            if problems:
                raise BulkError(f"{len(problems)} documents refused: " + "; ".join(problems[:5]))

    def get_many(self, paper_ids: Iterable[str]) -> dict[str, PaperDoc]:
        body = mget_body(paper_ids)
        if not body["ids"]:
            return {}
        self.ensure_index()
        response = self.client().mget(index=self.index_name, body=body)
        return {d["_id"]: d["_source"] for d in response.get("docs", []) if d.get("found")}

    def iter_docs(self, venue: str | None = None, year: int | None = None) -> Iterator[PaperDoc]:
        after: str | None = None
        while True:
            page = self._search(scan_body(venue, year, after))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1]["paper_id"]

    def search(self, query: str, limit: int = 20) -> list[PaperDoc]:
        return self._search(search_body(query, limit))

    def by_title(self, title: str, limit: int = 10) -> list[PaperDoc]:
        return self._search(title_body(title, limit))

    def by_author(self, author: str, limit: int = 50) -> list[PaperDoc]:
        return self._search(author_body(author, limit))

    def by_keywords(self, keywords: list[str], limit: int = 50) -> list[PaperDoc]:
        return self._search(keywords_body(keywords, limit))

    def recent(self, limit: int = 10) -> list[PaperDoc]:
        return self._search(recent_body(limit))

    def by_status(self, field: str, status: str, limit: int = 1000) -> list[PaperDoc]:
        return self._search(status_body(field, status, limit))

    def by_dedup_key(self, dedup_key: str) -> list[PaperDoc]:
        return self._search(dedup_body(dedup_key))

    def counts(self) -> dict[str, Any]:
        # Aggregated by the cluster: `status --json` stays one or two requests at any index size.
        self.ensure_index()
        per: dict[str, dict[str, int]] = {}
        after: dict[str, Any] | None = None
        while True:
            page, after = parse_counts_page(self.client().search(index=self.index_name, body=counts_body(after)))
            per.update(page)
            if after is None or len(page) < 1000:
                break
        keys = ("papers", *STAGE_KEYS[1:], "errors")
        total = {k: sum(c[k] for c in per.values()) for k in keys}
        return {**total, "partitions": dict(sorted(per.items()))}

    def similar(
        self, text: str, limit: int = 5, exclude: Iterable[str] = (), max_year: int | None = None
    ) -> list[PaperDoc]:
        if not text.strip():
            return []
        return self._search(similar_body(text, limit, exclude, max_year))


def opensearch_index_from_env() -> OpenSearchIndex:
    """The index the `aws` profile uses: OPENSEARCH_URL, OPENSEARCH_AUTH (default sigv4),
    OPENSEARCH_USERNAME / OPENSEARCH_PASSWORD for basic auth, OPENSEARCH_SERVICE (es | aoss)."""
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        raise ValueError("ANNAPURNA_PROFILE=aws needs OPENSEARCH_URL (or ANNAPURNA_INDEX=sqlite)")
    auth = os.environ.get("OPENSEARCH_AUTH", "sigv4")
    return OpenSearchIndex(
        url=url,
        auth=auth,
        username=os.environ.get("OPENSEARCH_USERNAME"),
        password=dg.EnvVar("OPENSEARCH_PASSWORD") if auth == "basic" else None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        service=os.environ.get("OPENSEARCH_SERVICE", "es"),
    )
