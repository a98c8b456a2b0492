"""The paper index: every paper with its judgment, program and results, searchable.

A paper is a JSON document keyed by `paper_id`. Fields written by the stages:

- papers:     venue, year, title, authors, abstract, published, url, pdf_url, source, aliases,
              pdf_key, text_key, content_hash, dedup_key, status, error, duplicate_of
- judgments:  judge_status, judge_key, judgment{...}, relevant, accepted, score
- code:       code_status, code_key, code_sha256, code{...}
- tests:      test_status, test{...}

`upsert` merges the given fields into what is stored, so each stage writes only its own fields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

PaperDoc = dict[str, Any]

# The stage counts `annapurna status --json` prints; scripts rely on these keys.
STAGE_KEYS = ("papers", "judged", "accepted", "generated", "tested", "passed", "failed")


def stage_counts(docs: Iterable[PaperDoc]) -> dict[str, int]:
    counts = dict.fromkeys(STAGE_KEYS, 0)
    counts["errors"] = 0
    for d in docs:
        counts["papers"] += 1
        if d.get("status") not in (None, "ok"):
            counts["errors"] += 1
        if d.get("judge_status") == "judged":
            counts["judged"] += 1
            if d.get("accepted"):
                counts["accepted"] += 1
        if d.get("code_status") == "generated":
            counts["generated"] += 1
        if d.get("test_status"):
            counts["tested"] += 1
            counts["passed" if d["test_status"] == "passed" else "failed"] += 1
    return counts


class PaperIndex(dg.ConfigurableResource, ABC):
    @abstractmethod
    def upsert(self, docs: list[PaperDoc]) -> None:
        """Merge each doc's fields into the stored paper with the same `paper_id` (create if new)."""

    @abstractmethod
    def get_many(self, paper_ids: Iterable[str]) -> dict[str, PaperDoc]: ...

    @abstractmethod
    def iter_docs(self, venue: str | None = None, year: int | None = None) -> Iterator[PaperDoc]: ...

    @abstractmethod
    def search(self, query: str, limit: int = 20) -> list[PaperDoc]:
        """Full-text search over title, abstract and authors, best match first."""

    @abstractmethod
    def by_title(self, title: str, limit: int = 10) -> list[PaperDoc]: ...

    @abstractmethod
    def by_author(self, author: str, limit: int = 50) -> list[PaperDoc]: ...

    @abstractmethod
    def by_keywords(self, keywords: list[str], limit: int = 50) -> list[PaperDoc]:
        """Papers whose abstract (or title) holds every keyword."""

    @abstractmethod
    def recent(self, limit: int = 10) -> list[PaperDoc]:
        """Most recently published first."""

    @abstractmethod
    def by_status(self, field: str, status: str, limit: int = 1000) -> list[PaperDoc]:
        """`field` is one of status, judge_status, code_status, test_status."""

    @abstractmethod
    def by_dedup_key(self, dedup_key: str) -> list[PaperDoc]: ...

    @abstractmethod
    def similar(self, text: str, limit: int = 5, exclude: Iterable[str] = (), max_year: int | None = None) -> list[PaperDoc]:
        """Papers whose title/abstract share the most terms with `text` (for judging novelty)."""

    def get(self, paper_id: str) -> PaperDoc | None:
        return self.get_many([paper_id]).get(paper_id)

    def counts(self) -> dict[str, Any]:
        """Stage counts in total and per partition key (`venue|year`)."""
        per: dict[str, list[PaperDoc]] = {}
        for d in self.iter_docs():
            per.setdefault(f"{d['venue']}|{d['year']}", []).append(d)
        total = stage_counts(d for docs in per.values() for d in docs)
        return {**total, "partitions": {k: stage_counts(v) for k, v in sorted(per.items())}}
