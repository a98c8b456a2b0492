"""Paper sources: where the `papers` asset finds the papers of one venue/year."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

VENUES = ("iclr", "icml", "neurips", "mlsys", "arxiv")


class PdfUnavailable(Exception):
    """The source could not deliver a PDF for a paper (missing, too large, not a PDF, rate-limited)."""


@dataclass
class SourcePaper:
    paper_id: str  # stable, safe in object keys: [A-Za-z0-9._-]
    venue: str
    year: int
    title: str
    authors: list[str]
    abstract: str
    source: str  # demo | arxiv | openreview | proceedings | upload
    published: str | None = None  # ISO date
    url: str | None = None
    pdf_url: str | None = None
    arxiv_id: str | None = None
    decision: str | None = None  # oral | spotlight | poster | ...
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FetchOptions:
    search_term: str | None = None
    max_papers: int | None = None
    offset: int = 0
    # Only papers newer than this ISO timestamp (incremental arXiv runs).
    since: str | None = None


class PaperSource(dg.ConfigurableResource, ABC):
    @abstractmethod
    def fetch_papers(self, venue: str, year: int, options: FetchOptions) -> Iterator[SourcePaper]: ...

    @abstractmethod
    def fetch_pdf(self, paper: SourcePaper, max_bytes: int) -> bytes:
        """The paper's PDF bytes; raise PdfUnavailable when they cannot be had."""
