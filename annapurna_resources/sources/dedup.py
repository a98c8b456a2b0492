"""The same paper found at several sources is one paper: matched by normalized title + first author."""

from __future__ import annotations

import re
import unicodedata

# Venues outrank arXiv: the venue record is canonical, the arXiv one becomes its alias.
SOURCE_RANK = {"arxiv": 0}


def normalize_title(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def first_author_surname(authors: list[str]) -> str:
    if not authors:
        return ""
    name = unicodedata.normalize("NFKD", authors[0]).encode("ascii", "ignore").decode().lower().strip()
    # "Surname, Given" and "Given Surname" both occur across sources.
    surname = name.split(",")[0] if "," in name else (name.split() or [""])[-1]
    return re.sub(r"[^a-z]+", "", surname)


def dedup_key(title: str, authors: list[str]) -> str:
    return f"{normalize_title(title)}|{first_author_surname(authors)}"


def venue_rank(venue: str) -> int:
    """Higher is more canonical."""
    return SOURCE_RANK.get(venue, 1)
