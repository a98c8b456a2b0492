"""Proceedings sites: NeurIPS (papers.nips.cc), MLSys (proceedings.mlsys.org), PMLR for ICML.

Page names change from year to year (`-Abstract.html`, `-Abstract-mlsys2023.html`,
`-Abstract-Conference.html`), so nothing here builds a paper URL: the year's listing is found by
following the link on the site's front page, each paper by following its link on the listing, and
each PDF by following the link on the paper's page. The HTML parsers are pure functions of
(html, page url), unit-tested on their own.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import requests
from bs4 import BeautifulSoup

from annapurna_resources.sources import FetchOptions, SourcePaper
from annapurna_resources.sources.dedup import normalize_title
from annapurna_resources.sources.parsing import SourceFetchError, collapse_ws, proceedings_paper_id
from annapurna_resources.sources.pdf_download import USER_AGENT, parse_retry_after

log = logging.getLogger(__name__)

NEURIPS_DEFAULT = "https://papers.nips.cc"
MLSYS_DEFAULT = "https://proceedings.mlsys.org"
PMLR_DEFAULT = "https://proceedings.mlr.press"

# The NeurIPS and MLSys sites run the same proceedings software, so one parser reads both.
_ICML_VOLUME = re.compile(r"International Conference on Machine Learning", re.IGNORECASE)


@dataclass
class ListedPaper:
    title: str
    authors: list[str]
    page_url: str
    pdf_url: str | None = None


def _soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def split_authors(text: str) -> list[str]:
    parts = re.split(r",|\band\b", text)
    return [collapse_ws(p) for p in parts if collapse_ws(p)]


# ---- papers.nips.cc / proceedings.mlsys.org -------------------------------------------------


def find_year_link(html: str, page_url: str, year: int) -> str | None:
    """The link to `year`'s listing on a proceedings front page."""
    soup = _soup(html)
    for a in soup.find_all("a", href=True):
        href = str(a["href"])
        text = collapse_ws(a.get_text())
        if href.lower().endswith(".pdf"):
            continue
        if re.search(rf"\b{year}\b", text) or re.search(rf"/{year}/?$", href):
            return urljoin(page_url, href)
    return None


def parse_listing(html: str, page_url: str) -> list[ListedPaper]:
    """Papers on a NeurIPS/MLSys year listing: each `<li>` has the paper link and the authors in `<i>`."""
    soup = _soup(html)
    papers = []
    for a in soup.find_all("a", href=True):
        href = str(a["href"])
        # Paper pages are '.../hash/<hash>-Abstract*.html'; other links (years, bibtex, search) are not.
        if "-Abstract" not in href or not href.endswith(".html"):
            continue
        title = collapse_ws(a.get_text())
        if not title:
            continue
        holder = a.find_parent("li") or a.parent
        author_tag = holder.find("i") if holder is not None else None
        authors = split_authors(author_tag.get_text()) if author_tag is not None else []
        papers.append(ListedPaper(title=title, authors=authors, page_url=urljoin(page_url, href)))
    return papers


def parse_paper_page(html: str, page_url: str) -> tuple[str, str | None]:
    """(abstract, pdf url) from a NeurIPS/MLSys paper page."""
    soup = _soup(html)
    abstract = ""
    heading = soup.find(lambda t: t.name in ("h4", "h3", "h2") and t.get_text(strip=True).lower() == "abstract")
    if heading is not None:
        parts = []
        for sibling in heading.find_next_siblings():
            if sibling.name in ("h4", "h3", "h2"):
                break
            parts.append(sibling.get_text(" "))
        abstract = collapse_ws(" ".join(parts))
    pdf_url = None
    candidates = [a for a in soup.find_all("a", href=True) if str(a["href"]).lower().endswith(".pdf")]
    # Prefer the paper itself over supplements and reviews listed beside it.
    candidates.sort(key=lambda a: (a.get_text(strip=True).lower() != "paper", "supplement" in str(a["href"]).lower()))
    if candidates:
        pdf_url = urljoin(page_url, str(candidates[0]["href"]))
    return abstract, pdf_url


# ---- proceedings.mlr.press (ICML) -----------------------------------------------------------


def find_pmlr_volume(html: str, page_url: str, year: int) -> str | None:
    """The PMLR volume of ICML `year`: its entry names the conference and the year."""
    soup = _soup(html)
    for item in soup.find_all(["li", "div", "tr"]):
        text = collapse_ws(item.get_text(" "))
        if not _ICML_VOLUME.search(text) or not re.search(rf"\b{year}\b", text):
            continue
        if "workshop" in text.lower():
            continue
        link = item.find("a", href=True)
        if link is not None:
            return urljoin(page_url, str(link["href"]))
    return None


def parse_pmlr_volume(html: str, page_url: str) -> list[ListedPaper]:
    soup = _soup(html)
    papers = []
    for div in soup.select("div.paper"):
        title_tag = div.select_one(".title")
        if title_tag is None:
            continue
        title = collapse_ws(title_tag.get_text())
        authors_tag = div.select_one(".authors")
        authors = split_authors(authors_tag.get_text()) if authors_tag is not None else []
        page_url_, pdf_url = None, None
        for a in div.select(".links a[href]"):
            href = str(a["href"])
            label = a.get_text(strip=True).lower()
            if href.lower().endswith(".pdf") and pdf_url is None and "supp" not in label:
                pdf_url = urljoin(page_url, href)
            elif label in ("abs", "abstract") and page_url_ is None:
                page_url_ = urljoin(page_url, href)
        if title and page_url_:
            papers.append(ListedPaper(title=title, authors=authors, page_url=page_url_, pdf_url=pdf_url))
    return papers


def parse_pmlr_abstract(html: str) -> str:
    soup = _soup(html)
    tag = soup.select_one("#abstract") or soup.select_one(".abstract")
    return collapse_ws(tag.get_text(" ")) if tag is not None else ""


# ---- fetching -------------------------------------------------------------------------------


class ProceedingsFetcher:
    def __init__(
        self,
        neurips_url: str | None = None,
        mlsys_url: str | None = None,
        pmlr_url: str | None = None,
        session: requests.Session | None = None,
        delay_s: float = 1.0,
        max_attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base = {
            "neurips": (neurips_url or os.environ.get("NEURIPS_PROCEEDINGS_URL") or NEURIPS_DEFAULT).rstrip("/"),
            "mlsys": (mlsys_url or os.environ.get("MLSYS_PROCEEDINGS_URL") or MLSYS_DEFAULT).rstrip("/"),
            "icml": (pmlr_url or os.environ.get("PMLR_URL") or PMLR_DEFAULT).rstrip("/"),
        }
        self.session = session or requests.Session()
        self.delay_s = delay_s
        self.max_attempts = max_attempts
        self.sleep = sleep
        self._last_request = 0.0
        self._listings: dict[tuple[str, int], list[ListedPaper]] = {}

    def supports(self, venue: str) -> bool:
        return venue in self.base

    def _get(self, url: str) -> str:
        for attempt in range(self.max_attempts):
            wait = self.delay_s - (time.monotonic() - self._last_request)
            if wait > 0:
                self.sleep(wait)
            try:
                resp = self.session.get(url, headers={"User-Agent": USER_AGENT}, timeout=60)
            except requests.RequestException as exc:
                self._last_request = time.monotonic()
                if attempt + 1 == self.max_attempts:
                    raise SourceFetchError(f"{url}: {exc}") from exc
                self.sleep(min(2.0 * 2**attempt, 30.0))
                continue
            self._last_request = time.monotonic()
            if resp.status_code in (429, 503) and attempt + 1 < self.max_attempts:
                self.sleep(parse_retry_after(resp.headers.get("Retry-After"), default=2.0 * 2**attempt))
                continue
            if resp.status_code != 200:
                raise SourceFetchError(f"HTTP {resp.status_code} for {url}")
            return resp.text
        raise SourceFetchError(f"{url}: still rate limited after {self.max_attempts} attempts")

    def listing(self, venue: str, year: int) -> list[ListedPaper]:
        key = (venue, year)
        if key not in self._listings:
            base = self.base[venue]
            front = self._get(base + "/")
            if venue == "icml":
                volume = find_pmlr_volume(front, base + "/", year)
                if volume is None:
                    raise SourceFetchError(f"no ICML {year} volume listed on {base}")
                self._listings[key] = parse_pmlr_volume(self._get(volume), volume)
            else:
                year_url = find_year_link(front, base + "/", year)
                if year_url is None:
                    raise SourceFetchError(f"no {year} proceedings listed on {base}")
                self._listings[key] = parse_listing(self._get(year_url), year_url)
        return self._listings[key]

    def _details(self, venue: str, listed: ListedPaper) -> tuple[str, str | None]:
        html = self._get(listed.page_url)
        if venue == "icml":
            return parse_pmlr_abstract(html), listed.pdf_url
        return parse_paper_page(html, listed.page_url)

    def fetch(self, venue: str, year: int, options: FetchOptions) -> Iterator[SourcePaper]:
        listed = self.listing(venue, year)
        term_words = (options.search_term or "").lower().split()
        to_skip = max(options.offset, 0)
        yielded = 0
        seen: set[str] = set()
        for item in listed:
            if term_words and not all(w in item.title.lower() for w in term_words):
                # The abstract needs a request per paper; a search term narrows by title first.
                continue
            if to_skip > 0:
                to_skip -= 1
                continue
            paper_id = proceedings_paper_id(venue, year, item.title)
            if paper_id in seen:
                continue
            seen.add(paper_id)
            try:
                abstract, pdf_url = self._details(venue, item)
            except SourceFetchError as exc:
                # One broken paper page costs that paper its abstract, not the partition its listing.
                log.warning("proceedings page failed: %s", exc)
                abstract, pdf_url = "", item.pdf_url
            yield SourcePaper(
                paper_id=paper_id,
                venue=venue,
                year=year,
                title=item.title,
                authors=item.authors,
                abstract=abstract,
                source="proceedings",
                url=item.page_url,
                pdf_url=pdf_url,
                extra={"proceedings": self.base[venue]},
            )
            yielded += 1
            if options.max_papers is not None and yielded >= options.max_papers:
                return

    def find_pdf_url(self, venue: str, year: int, title: str) -> str | None:
        """The proceedings PDF of the paper titled `title` (fallback when OpenReview refuses a PDF)."""
        if not self.supports(venue):
            return None
        wanted = normalize_title(title)
        for item in self.listing(venue, year):
            if normalize_title(item.title) == wanted:
                return item.pdf_url or self._details(venue, item)[1]
        return None
