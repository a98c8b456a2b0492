"""Pure helpers shared by the live sources: ids safe in object keys, text clean-up, decisions.

Nothing here does I/O, so every rule is unit-tested without a server.
"""

from __future__ import annotations

import re
import unicodedata

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ARXIV_NEW = re.compile(r"(\d{4}\.\d{4,5})(v\d+)?$")
_ARXIV_OLD = re.compile(r"([a-z][a-z.-]*/\d{7})(v\d+)?$", re.IGNORECASE)


class SourceFetchError(Exception):
    """A source could not deliver its listing (bad answers, rate limits that did not lift).

    Raised after the papers already fetched have been yielded, so a caller keeps those."""


def collapse_ws(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def safe_component(text: str, max_len: int = 80) -> str:
    """`text` reduced to [A-Za-z0-9._-], never empty, never '.' or '..'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    cleaned = _UNSAFE.sub("-", ascii_text).strip("-.")[:max_len].strip("-.")
    return cleaned or "x"


def slugify(title: str, max_len: int = 60) -> str:
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:max_len].rstrip("-") or "untitled"


def arxiv_id_from_url(url_or_id: str) -> tuple[str, str | None]:
    """('2401.01234', 'v2') from 'http://arxiv.org/abs/2401.01234v2' (old ids like hep-th/9901001 too)."""
    text = url_or_id.strip().rstrip("/")
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        match = pattern.search(text)
        if match:
            return match.group(1), match.group(2)
    raise ValueError(f"not an arXiv id: {url_or_id!r}")


def arxiv_paper_id(arxiv_id: str) -> str:
    """`arxiv-2401.01234`; the version is dropped so every version is one paper."""
    base, _version = arxiv_id_from_url(arxiv_id)
    return "arxiv-" + safe_component(base.replace("/", "_"))


def openreview_paper_id(forum_id: str) -> str:
    return "openreview-" + safe_component(forum_id)


def proceedings_paper_id(venue: str, year: int, title: str) -> str:
    return f"{venue}{year}-{slugify(title)}"


def decision_from_venue(venue_text: str | None) -> str | None:
    """'ICLR 2024 oral' -> 'oral'; 'NeurIPS 2023 spotlight' -> 'spotlight'; 'Submitted to ...' -> None."""
    text = (venue_text or "").lower()
    if not text or "submitted" in text or "withdrawn" in text or "desk rejected" in text or "rejected" in text:
        return None
    for word, decision in (
        ("oral", "oral"),
        ("talk", "oral"),
        ("spotlight", "spotlight"),
        ("notable-top-5%", "oral"),
        ("notable top 5%", "oral"),
        ("notable-top-25%", "spotlight"),
        ("notable top 25%", "spotlight"),
        ("poster", "poster"),
        ("invited", "invited"),
    ):
        if word in text:
            return decision
    return "accepted"


def is_accepted_venue(venue_text: str | None, venue_id: str | None, accepted_venue_id: str) -> bool:
    """A v2 note is accepted when its venueid is the conference's own id (not .../Rejected_Submission)."""
    if venue_id is not None:
        return venue_id == accepted_venue_id
    return decision_from_venue(venue_text) is not None


def year_of(iso_date: str | None) -> int | None:
    if not iso_date or len(iso_date) < 4 or not iso_date[:4].isdigit():
        return None
    return int(iso_date[:4])
