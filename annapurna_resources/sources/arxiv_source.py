"""arXiv through the `arxiv` package (4.x `Client.results()`), pointed at `ARXIV_API_URL`.

A year partition holds the papers first published (v1 submitted) that year in the default ML
categories. Requests go out at most one per `delay_s` (arXiv asks for 3 s); a 429/503 waits out
Retry-After with our own backoff and the listing resumes at the offset it had reached. Answers that
are not a complete Atom feed (an HTML page with status 200, a cut-off body) count as failed requests,
since the package's lenient parser would otherwise read them as "no more results".
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import arxiv
import requests

from annapurna_resources.sources import FetchOptions, SourcePaper
from annapurna_resources.sources.parsing import (
    SourceFetchError,
    arxiv_id_from_url,
    arxiv_paper_id,
    collapse_ws,
)
from annapurna_resources.sources.pdf_download import parse_retry_after

log = logging.getLogger(__name__)

ARXIV_API_DEFAULT = "https://export.arxiv.org/api/query"
DEFAULT_CATEGORIES = ("cs.LG", "cs.CL", "cs.CV", "cs.AI", "stat.ML")


class FeedRejected(requests.RequestException):
    """The server answered 200 with something that is not a complete arXiv Atom feed."""


def build_arxiv_query(year: int, categories: tuple[str, ...] | list[str], search_term: str | None) -> str:
    """`(cat:a OR cat:b) AND submittedDate:[YYYY01010000 TO YYYY12312359] [AND all:"term"]`."""
    parts = []
    if categories:
        parts.append("(" + " OR ".join(f"cat:{c}" for c in categories) + ")")
    parts.append(f"submittedDate:[{year}01010000 TO {year}12312359]")
    if search_term and search_term.strip():
        term = collapse_ws(search_term.replace('"', " "))
        parts.append(f'all:"{term}"' if " " in term else f"all:{term}")
    return " AND ".join(parts)


def check_atom_feed(body: bytes) -> str | None:
    """Why `body` is not a complete Atom feed, or None when it is one."""
    head = body[:4096].lstrip()
    if not head:
        return "empty body"
    if b"<feed" not in head or b"http://www.w3.org/2005/Atom" not in head:
        snippet = collapse_ws(head[:80].decode("utf-8", "replace"))
        return f"not an Atom feed: {snippet!r}"
    if not body.rstrip().endswith(b"</feed>"):
        return "truncated feed (no closing </feed>)"
    marker = body.find(b"/api/errors#")
    if marker >= 0:
        # arXiv reports a bad query as a feed whose one entry is the error, sometimes with status 200.
        detail = body[marker + len(b"/api/errors#") :].split(b"<", 1)[0].decode("utf-8", "replace")
        return f"arXiv API error: {detail}"
    return None


def result_to_paper(result: arxiv.Result, pdf_base_url: str | None = None) -> SourcePaper:
    arxiv_id, version = arxiv_id_from_url(result.entry_id)
    pdf_url = result.pdf_url
    if pdf_base_url:
        pdf_url = f"{pdf_base_url.rstrip('/')}/{arxiv_id}{version or ''}"
    return SourcePaper(
        paper_id=arxiv_paper_id(arxiv_id),
        venue="arxiv",
        year=result.published.year,
        title=collapse_ws(result.title),
        authors=[collapse_ws(a.name) for a in result.authors if collapse_ws(a.name)],
        abstract=collapse_ws(result.summary),
        source="arxiv",
        published=result.published.isoformat(),
        url=result.entry_id,
        pdf_url=pdf_url,
        arxiv_id=arxiv_id,
        extra={
            "version": version,
            "updated": result.updated.isoformat(),
            "primary_category": result.primary_category,
            "categories": list(result.categories),
            "comment": result.comment,
            "journal_ref": result.journal_ref,
            "doi": result.doi,
        },
    )


class _Client(arxiv.Client):
    """arxiv.Client pointed at another endpoint, with a response check on its own session."""

    def __init__(self, api_url: str, page_size: int, delay_s: float, on_response: Callable[..., Any]) -> None:
        # Every failure is retried by our loop (which knows Retry-After), not by the package's.
        super().__init__(page_size=page_size, delay_seconds=delay_s, num_retries=0)
        self.query_url_format = api_url + ("&{}" if "?" in api_url else "?{}")
        self._session.hooks["response"].append(on_response)


class ArxivFetcher:
    def __init__(
        self,
        api_url: str | None = None,
        pdf_base_url: str | None = None,
        categories: tuple[str, ...] | list[str] = DEFAULT_CATEGORIES,
        delay_s: float = 3.0,
        page_size: int = 100,
        max_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url or os.environ.get("ARXIV_API_URL") or ARXIV_API_DEFAULT
        self.pdf_base_url = pdf_base_url or os.environ.get("ARXIV_PDF_URL") or None
        self.categories = tuple(categories)
        self.max_attempts = max_attempts
        self.sleep = sleep
        self._retry_after: str | None = None
        self.client = _Client(self.api_url, page_size, delay_s, self._on_response)

    def _on_response(self, resp: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if resp.status_code in (429, 503):
            self._retry_after = resp.headers.get("Retry-After") or ""
        elif resp.status_code == 200:
            problem = check_atom_feed(resp.content)
            if problem:
                raise FeedRejected(f"{problem} from {resp.url}")
        return resp

    def fetch(self, year: int, options: FetchOptions) -> Iterator[SourcePaper]:
        search = arxiv.Search(
            query=build_arxiv_query(year, self.categories, options.search_term),
            max_results=None,
            sort_by=arxiv.SortCriterion.SubmittedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        since = datetime.fromisoformat(options.since) if options.since else None
        api_offset = max(options.offset, 0)
        yielded = 0
        older_in_a_row = 0
        failures = 0
        seen: set[str] = set()
        while True:
            try:
                for result in self.client.results(search, offset=api_offset):
                    api_offset += 1
                    failures = 0
                    try:
                        paper = result_to_paper(result, self.pdf_base_url)
                    except ValueError:
                        log.warning("skipping arXiv entry with an unrecognised id %r", result.entry_id)
                        continue
                    # The query already restricts the year; checking again keeps mirrors and caches honest.
                    if paper.year != year or paper.paper_id in seen:
                        continue
                    if since is not None and result.published <= _aware(since, result.published):
                        # Sorted newest first: a page worth of older papers means we have caught up.
                        older_in_a_row += 1
                        if older_in_a_row >= self.client.page_size:
                            return
                        continue
                    older_in_a_row = 0
                    seen.add(paper.paper_id)
                    yield paper
                    yielded += 1
                    if options.max_papers is not None and yielded >= options.max_papers:
                        return
                return
            except (arxiv.HTTPError, arxiv.UnexpectedEmptyPageError, requests.RequestException) as exc:
                failures += 1
                status = getattr(exc, "status", None)
                if isinstance(status, int) and 400 <= status < 500 and status != 429:
                    # A query arXiv rejects (400) fails the same way every time.
                    raise SourceFetchError(f"arXiv rejected the query (HTTP {status}): {exc}") from exc
                if failures >= self.max_attempts:
                    raise SourceFetchError(
                        f"arXiv listing stopped at offset {api_offset} after {failures} failed requests: {exc}"
                    ) from exc
                if status in (429, 503):
                    wait = parse_retry_after(self._retry_after, default=3.0 * 2**failures)
                else:
                    wait = min(3.0 * 2 ** (failures - 1), 60.0)
                self._retry_after = None
                log.warning("arXiv request failed (%s); retrying in %.0fs from offset %d", exc, wait, api_offset)
                self.sleep(wait)


def _aware(since: datetime, like: datetime) -> datetime:
    if since.tzinfo is None and like.tzinfo is not None:
        return since.replace(tzinfo=like.tzinfo)
    return since
