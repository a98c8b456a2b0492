"""The real paper sources behind one `PaperSource`: arXiv, OpenReview and the proceedings sites.

`fetch_papers` picks the source by venue and year (OpenReview where the venue/year is there, the
proceedings site otherwise); `fetch_pdf` downloads with a size cap and resume, and for OpenReview
papers falls back to the proceedings PDF when OpenReview refuses (guests hit its PDF rate limit).
Base URLs come from the environment variables each fetcher reads (ARXIV_API_URL, ...).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import requests
from pydantic import Field, PrivateAttr

from annapurna_resources.settings import annapurna_home
from annapurna_resources.sources import FetchOptions, PaperSource, PdfUnavailable, SourcePaper
from annapurna_resources.sources.arxiv_source import DEFAULT_CATEGORIES, ArxivFetcher
from annapurna_resources.sources.openreview_source import OpenReviewFetcher, openreview_api_for
from annapurna_resources.sources.parsing import SourceFetchError
from annapurna_resources.sources.pdf_download import download_pdf
from annapurna_resources.sources.proceedings import ProceedingsFetcher

log = logging.getLogger(__name__)


class LiveSource(PaperSource):
    arxiv_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    arxiv_delay_s: float = Field(default=3.0, description="arXiv asks for at most one request every 3 s")
    proceedings_delay_s: float = 1.0
    pdf_timeout_s: float = 120.0
    pdf_delay_s: float = Field(default=1.0, description="gap between PDF downloads from one public service")
    polite_hosts: list[str] = Field(
        default_factory=lambda: ["arxiv.org", "export.arxiv.org", "openreview.net", "api.openreview.net",
                                 "api2.openreview.net"],
        description="hosts that get `pdf_delay_s` between downloads (mirrors and local servers do not)",
    )
    partial_dir: str | None = Field(
        default=None, description="Where cut-off downloads wait to be resumed; default $ANNAPURNA_HOME/partial"
    )

    _arxiv: ArxivFetcher | None = PrivateAttr(default=None)
    _openreview: OpenReviewFetcher | None = PrivateAttr(default=None)
    _proceedings: ProceedingsFetcher | None = PrivateAttr(default=None)
    _session: requests.Session | None = PrivateAttr(default=None)
    _last_download: dict[str, float] = PrivateAttr(default_factory=dict)

    # Fetchers are built on first use, so the environment (ARXIV_API_URL, ...) is read at run time.
    def arxiv(self) -> ArxivFetcher:
        if self._arxiv is None:
            self._arxiv = ArxivFetcher(categories=self.arxiv_categories, delay_s=self.arxiv_delay_s)
        return self._arxiv

    def openreview(self) -> OpenReviewFetcher:
        if self._openreview is None:
            self._openreview = OpenReviewFetcher()
        return self._openreview

    def proceedings(self) -> ProceedingsFetcher:
        if self._proceedings is None:
            self._proceedings = ProceedingsFetcher(delay_s=self.proceedings_delay_s)
        return self._proceedings

    def fetch_papers(self, venue: str, year: int, options: FetchOptions) -> Iterator[SourcePaper]:
        if venue == "arxiv":
            return self.arxiv().fetch(year, options)
        if openreview_api_for(venue, year) is not None:
            return self.openreview().fetch(venue, year, options)
        if self.proceedings().supports(venue):
            return self.proceedings().fetch(venue, year, options)
        raise SourceFetchError(f"no live source knows {venue} {year}")

    def fetch_pdf(self, paper: SourcePaper, max_bytes: int) -> bytes:
        if self._session is None:
            self._session = requests.Session()
        partial = Path(self.partial_dir) if self.partial_dir else annapurna_home() / "partial"
        errors = []
        for url in self._pdf_urls(paper):
            self._pace(url)
            try:
                return download_pdf(
                    url, max_bytes, session=self._session, partial_dir=partial, timeout_s=self.pdf_timeout_s
                )
            except PdfUnavailable as exc:
                errors.append(str(exc))
                log.warning("PDF of %s unavailable at %s: %s", paper.paper_id, url, exc)
        if not errors:
            raise PdfUnavailable(f"{paper.paper_id} has no PDF link")
        raise PdfUnavailable("; ".join(errors))

    def _pace(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        if host not in self.polite_hosts:
            return
        wait = self.pdf_delay_s - (time.monotonic() - self._last_download.get(host, -1e9))
        if wait > 0:
            time.sleep(wait)
        self._last_download[host] = time.monotonic()

    def _pdf_urls(self, paper: SourcePaper) -> Iterator[str]:
        if paper.pdf_url:
            yield paper.pdf_url
        if paper.source == "openreview" and self.proceedings().supports(paper.venue):
            try:
                fallback = self.proceedings().find_pdf_url(paper.venue, paper.year, paper.title)
            except SourceFetchError as exc:
                log.warning("no proceedings fallback for %s: %s", paper.paper_id, exc)
                fallback = None
            if fallback and fallback != paper.pdf_url:
                yield fallback
