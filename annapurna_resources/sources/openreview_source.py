"""Accepted papers of ICLR, ICML and NeurIPS from OpenReview, through `openreview-py`.

Venues moved from API v1 to v2 over the years: ICLR up to 2023 and NeurIPS 2021-22 live in v1
(`<venue>/-/Blind_Submission`, flat `content`), later venues in v2 (accepted papers are the notes whose
`content.venueid` is the conference id, every field wrapped as `{"value": ...}`). Years before a venue
used OpenReview at all are answered by the proceedings sites instead (see `openreview_api_for`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from annapurna_resources.sources import FetchOptions, SourcePaper
from annapurna_resources.sources.parsing import (
    SourceFetchError,
    collapse_ws,
    decision_from_venue,
    openreview_paper_id,
)

log = logging.getLogger(__name__)

OPENREVIEW_API_DEFAULT = "https://api2.openreview.net"
OPENREVIEW_API_V1_DEFAULT = "https://api.openreview.net"
VENUE_GROUPS = {"iclr": "ICLR.cc", "icml": "ICML.cc", "neurips": "NeurIPS.cc"}
PAGE_SIZE = 1000  # the API's own maximum per request


def openreview_api_for(venue: str, year: int) -> str | None:
    """'v1', 'v2', or None when that venue/year is not on OpenReview (use the proceedings)."""
    if venue == "iclr":
        if year < 2017:  # earlier ICLRs predate OpenReview's API records
            return None
        return "v1" if year <= 2023 else "v2"
    if venue == "neurips":
        if year < 2021:
            return None
        return "v1" if year <= 2022 else "v2"
    if venue == "icml":
        return "v2" if year >= 2023 else None
    return None


def conference_id(venue: str, year: int) -> str:
    return f"{VENUE_GROUPS[venue]}/{year}/Conference"


def field_value(content: dict[str, Any] | None, name: str) -> Any:
    """A content field of a v2 (`{"value": x}`) or v1 (flat) note; None when absent."""
    if not content or name not in content:
        return None
    value = content[name]
    if isinstance(value, dict):
        return value.get("value")
    return value


def _ms_to_iso(ms: Any) -> str | None:
    if not isinstance(ms, int | float) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def decision_from_decision_note(text: str | None) -> str | None:
    """v1 decision notes: 'Accept (Oral)' -> 'oral', 'Accept: notable-top-25%' -> 'spotlight', 'Reject' -> None."""
    lowered = (text or "").lower()
    if not lowered.startswith("accept"):
        return None
    return decision_from_venue(lowered.replace("accept", "", 1)) or "accepted"


def note_to_paper(
    note: dict[str, Any], venue: str, year: int, api_url: str, site_url: str = "https://openreview.net"
) -> tuple[SourcePaper | None, str | None]:
    """(paper, None) for an accepted paper, (None, reason) for a note that is not one or is unusable."""
    content = note.get("content") or {}
    note_id = note.get("forum") or note.get("id")
    if not note_id or not isinstance(note_id, str):
        return None, "note without id"
    title = collapse_ws(str(field_value(content, "title") or ""))
    if not title:
        return None, f"note {note_id} has no title"
    venue_text = field_value(content, "venue")
    decision = decision_from_venue(venue_text) if venue_text else None
    if decision is None:
        decision = _decision_from_replies(note)
    if decision is None:
        return None, f"note {note_id} is not an accepted paper (venue {venue_text!r})"
    authors_raw = field_value(content, "authors")
    authors = [collapse_ws(str(a)) for a in authors_raw if collapse_ws(str(a))] if isinstance(authors_raw, list) else []
    pdf_field = field_value(content, "pdf")
    keywords = field_value(content, "keywords")
    published = _ms_to_iso(note.get("pdate")) or _ms_to_iso(note.get("odate")) or _ms_to_iso(note.get("cdate"))
    return (
        SourcePaper(
            paper_id=openreview_paper_id(note_id),
            venue=venue,
            year=year,
            title=title,
            authors=authors,
            abstract=collapse_ws(str(field_value(content, "abstract") or "")),
            source="openreview",
            published=published,
            url=f"{site_url}/forum?id={note_id}",
            # The API serves the PDF itself at /pdf?id=, so a mirror or a test server can too.
            pdf_url=f"{api_url}/pdf?id={note_id}" if pdf_field else None,
            decision=decision,
            extra={
                "openreview_id": note_id,
                "venue_text": venue_text,
                "venueid": field_value(content, "venueid"),
                "keywords": [str(k) for k in keywords] if isinstance(keywords, list) else [],
                "pdf_path": pdf_field,
            },
        ),
        None,
    )


def _decision_from_replies(note: dict[str, Any]) -> str | None:
    replies = (note.get("details") or {}).get("directReplies") or []
    for reply in replies:
        invitation = reply.get("invitation") or " ".join(reply.get("invitations") or [])
        # ".../-/Decision" since 2018; ICLR 2017 called it ".../-/paperN/acceptance".
        if invitation.endswith(("Decision", "acceptance")) or "/-/Decision" in invitation:
            return decision_from_decision_note(field_value(reply.get("content"), "decision"))
    return None


def note_as_dict(note: Any) -> dict[str, Any]:
    """The fields we read from a client Note object (its to_json() drops `details`), or a dict as is."""
    if isinstance(note, dict):
        return note
    fields = ("id", "forum", "content", "pdate", "odate", "cdate", "details", "invitation", "invitations")
    return {name: getattr(note, name, None) for name in fields}


def matches_search(paper: SourcePaper, term: str | None) -> bool:
    if not term:
        return True
    haystack = f"{paper.title} {paper.abstract} {' '.join(paper.extra.get('keywords', []))}".lower()
    return all(word in haystack for word in term.lower().split())


class OpenReviewFetcher:
    def __init__(
        self,
        api_url: str | None = None,
        api_v1_url: str | None = None,
        client_v2_factory: Callable[[str], Any] | None = None,
        client_v1_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.api_url = (api_url or os.environ.get("OPENREVIEW_API_URL") or OPENREVIEW_API_DEFAULT).rstrip("/")
        self.api_v1_url = (
            api_v1_url or os.environ.get("OPENREVIEW_API_V1_URL") or OPENREVIEW_API_V1_DEFAULT
        ).rstrip("/")
        self._v2_factory = client_v2_factory or _default_v2_client
        self._v1_factory = client_v1_factory or _default_v1_client
        self.skipped: list[str] = []

    def fetch(self, venue: str, year: int, options: FetchOptions) -> Iterator[SourcePaper]:
        api = openreview_api_for(venue, year)
        if api is None:
            raise ValueError(f"{venue} {year} is not on OpenReview")
        venue_id = conference_id(venue, year)
        if api == "v2":
            client = self._v2_factory(self.api_url)
            # Accepted papers only: rejected/withdrawn ones carry another venueid.
            query: dict[str, Any] = {"content": {"venueid": venue_id}}
            api_base = self.api_url
        else:
            client = self._v1_factory(self.api_v1_url)
            # ICLR 2017 predates the Blind_Submission convention.
            invitation = "ICLR.cc/2017/conference/-/submission" if (venue, year) == ("iclr", 2017) else f"{venue_id}/-/Blind_Submission"
            query = {"invitation": invitation, "details": "directReplies"}
            api_base = self.api_v1_url
        # With a v2 query and no search term, every note is a match, so the API can skip `offset` itself.
        api_offset = options.offset if (api == "v2" and not options.search_term) else 0
        to_skip = options.offset - api_offset
        yielded = 0
        while True:
            try:
                notes = client.get_notes(limit=PAGE_SIZE, offset=api_offset, **query)
            except Exception as exc:  # the client raises OpenReviewException or requests errors alike
                raise SourceFetchError(f"OpenReview {api} listing of {venue_id} failed at offset {api_offset}: {exc}") from exc
            for note in notes:
                raw = note_as_dict(note)
                paper, why = note_to_paper(raw, venue, year, api_base)
                if paper is None:
                    if why and "not an accepted paper" not in why:
                        self.skipped.append(why)
                        log.warning("OpenReview: %s", why)
                    continue
                if not matches_search(paper, options.search_term):
                    continue
                if to_skip > 0:
                    to_skip -= 1
                    continue
                yield paper
                yielded += 1
                if options.max_papers is not None and yielded >= options.max_papers:
                    return
            if len(notes) < PAGE_SIZE:
                return
            api_offset += len(notes)


def _default_v2_client(url: str) -> Any:
    import openreview

    return openreview.api.OpenReviewClient(baseurl=url)


def _default_v1_client(url: str) -> Any:
    import openreview

    return openreview.Client(baseurl=url)
