"""The `papers` asset: fetch one venue/year's papers, store each PDF and its text once, index them."""


import dataclasses
import hashlib
import json
import time
from dataclasses import asdict
from typing import Any

import dagster as dg
import pandas as pd

from annapurna_assets.partitions import VENUE_YEAR, venue_year
from annapurna_assets.reporting import markdown_table
from annapurna_assets.text_extraction import (
    MAX_PDF_BYTES,
    TextExtractionError,
    extract_text,
    looks_like_pdf,
    title_and_abstract_from_text,
)
from annapurna_resources.index import PaperDoc, PaperIndex
from annapurna_resources.object_store import ObjectExistsError, ObjectStore
from annapurna_resources.settings import RAW_PAPERS_BUCKET
from annapurna_resources.sources import FetchOptions, PaperSource, PdfUnavailable, SourcePaper
from annapurna_resources.sources.dedup import dedup_key, venue_rank

# What the judge reads of the text; also what the content hash covers.
TEXT_EXCERPT_CHARS = 4000


class PapersConfig(dg.Config):
    search_term: str | None = None
    max_papers: int | None = None
    offset: int = 0
    # Fetch only papers published after the newest one already indexed for this partition
    # (arXiv's daily schedule uses it; venues list a whole year at once).
    incremental: bool = False
    max_pdf_mb: int = MAX_PDF_BYTES // 1024**2
    max_pages: int = 30
    max_chars: int = 200_000
    extract_time_limit_s: float = 30.0


def raw_key(venue: str, year: int, paper_id: str, ext: str) -> str:
    return f"papers/{venue}/{year}/{paper_id}.{ext}"


def content_hash(title: str, abstract: str, text: str) -> str:
    body = f"{title}\n{abstract}\n{text[:TEXT_EXCERPT_CHARS]}"
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def metadata_json(paper: SourcePaper) -> bytes:
    # Deterministic bytes, so writing the same metadata again is recognised as the same object.
    return json.dumps(asdict(paper), sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")


def newest_published(index: PaperIndex, venue: str, year: int) -> str | None:
    dates = [d["published"] for d in index.iter_docs(venue, year) if d.get("published") and d.get("source") != "upload"]
    return max(dates) if dates else None


def paper_from_metadata(data: bytes) -> SourcePaper | None:
    """A SourcePaper from a metadata JSON beside a PDF (ours, or another scraper's in the same shape)."""
    try:
        raw = json.loads(data)
        fields = {f.name for f in dataclasses.fields(SourcePaper)}
        paper = SourcePaper(**{k: v for k, v in raw.items() if k in fields})
        paper.year, paper.authors = int(paper.year), list(paper.authors or [])
        return paper if paper.paper_id and paper.venue else None
    except (ValueError, TypeError):
        return None


def discover_uploads(store: ObjectStore, venue: str, year: int, known: set[str]) -> list[SourcePaper]:
    """PDFs in the raw-papers store that this run's listing did not name: dropped there by a person
    or another scraper, or stored by an earlier run. With a metadata JSON beside it a PDF keeps that
    metadata; without, it enters as an upload whose title and abstract come from its own text."""
    prefix = f"papers/{venue}/{year}/"
    keys = set(store.list_keys(RAW_PAPERS_BUCKET, prefix))
    found = []
    for key in sorted(keys):
        stem = key[len(prefix) :].rsplit(".", 1)[0]
        if not key.endswith(".pdf") or "/" in stem or stem in known:
            continue
        meta_key = f"{prefix}{stem}.json"
        paper = paper_from_metadata(store.get(RAW_PAPERS_BUCKET, meta_key)) if meta_key in keys else None
        if paper is not None and paper.paper_id == stem and (paper.venue, paper.year) == (venue, year):
            found.append(paper)
        else:
            found.append(SourcePaper(paper_id=stem, venue=venue, year=year, title="", authors=[], abstract="",
                                     source="upload"))
    return found


def find_canonical(paper: SourcePaper, key: str, others: list[PaperDoc]) -> PaperDoc | None:
    """The record this paper duplicates, or None when this paper is (or becomes) the canonical one."""
    rivals = [d for d in others if d["paper_id"] != paper.paper_id and d.get("status") != "duplicate"]
    if not rivals:
        return None
    best = max(rivals, key=lambda d: venue_rank(d["venue"]))
    return best if venue_rank(best["venue"]) >= venue_rank(paper.venue) else None


class PaperIngester:
    """Takes one SourcePaper to a stored, indexed row. Never raises for a bad paper: the row says why."""

    def __init__(self, source: PaperSource, store: ObjectStore, index: PaperIndex, config: PapersConfig,
                 log: Any | None = None) -> None:
        self.source, self.store, self.index, self.config, self.log = source, store, index, config, log

    @staticmethod
    def empty_row(venue: str, year: int) -> dict[str, Any]:
        return {
            "paper_id": None, "venue": venue, "year": year, "title": "", "authors": [], "abstract": "",
            "published": None, "url": None, "pdf_url": None, "arxiv_id": None, "decision": None, "source": None,
            "pdf_key": None, "text_key": None, "pages": None, "text_chars": 0, "content_hash": None,
            "dedup_key": None, "aliases": [], "status": "ok", "error": None, "duplicate_of": None,
            "downloaded": False, "extracted": False,
        }

    def ingest(self, paper: SourcePaper) -> dict[str, Any]:
        venue, year = paper.venue, paper.year
        row = self.empty_row(venue, year)
        row.update(paper_id=paper.paper_id, title=paper.title, authors=list(paper.authors), abstract=paper.abstract,
                   published=paper.published, url=paper.url, pdf_url=paper.pdf_url, arxiv_id=paper.arxiv_id,
                   decision=paper.decision, source=paper.source)
        pdf_key = raw_key(venue, year, paper.paper_id, "pdf")
        text_key = raw_key(venue, year, paper.paper_id, "txt")
        if paper.source != "upload":
            self._store_metadata(paper, row)
            if self._mark_if_duplicate(paper, row):
                self.index.upsert([self._doc(row)])
                return row
        pdf = self._pdf(paper, pdf_key, row)
        text = self._text(pdf, text_key, row) if pdf is not None else ""
        if paper.source == "upload" and text:
            row["title"], row["abstract"] = title_and_abstract_from_text(text)
            if not row["title"]:
                row["title"] = paper.paper_id
            if self._mark_if_duplicate(SourcePaper(**{**asdict(paper), "title": row["title"]}), row):
                self.index.upsert([self._doc(row)])
                return row
        if row["status"] == "ok" and not row["abstract"].strip():
            found = title_and_abstract_from_text(text)[1] if text else ""
            if found:
                row["abstract"] = found
            else:
                row["status"], row["error"] = "no_abstract", "the source gave no abstract and none was found in the PDF text"
        row["dedup_key"] = row["dedup_key"] or dedup_key(row["title"], row["authors"])
        row["content_hash"] = content_hash(row["title"], row["abstract"], text)
        self.index.upsert([self._doc(row)])
        return row

    def _store_metadata(self, paper: SourcePaper, row: dict[str, Any]) -> None:
        key = raw_key(paper.venue, paper.year, paper.paper_id, "json")
        try:
            self.store.put_once(RAW_PAPERS_BUCKET, key, metadata_json(paper), "application/json")
        except ObjectExistsError:
            # The source's metadata changed since we first stored it; the first version stays.
            if self.log:
                self.log.info(f"{paper.paper_id}: metadata changed at the source; keeping the stored {key}")

    def _mark_if_duplicate(self, paper: SourcePaper, row: dict[str, Any]) -> bool:
        key = dedup_key(paper.title, list(paper.authors))
        row["dedup_key"] = key
        if not paper.title:
            return False
        others = self.index.by_dedup_key(key)
        canonical = find_canonical(paper, key, others)
        if canonical is not None:
            row["status"], row["duplicate_of"] = "duplicate", canonical["paper_id"]
            row["error"] = f"same paper as {canonical['paper_id']} ({canonical['venue']} {canonical['year']}); not stored twice"
            aliases = sorted({*canonical.get("aliases", []), paper.paper_id, *([paper.arxiv_id] if paper.arxiv_id else [])})
            self.index.upsert([{"paper_id": canonical["paper_id"], "aliases": aliases}])
            return True
        # This paper outranks records already indexed (a venue paper after its arXiv preprint).
        for d in others:
            if d["paper_id"] != paper.paper_id and d.get("status") != "duplicate":
                self.index.upsert([{"paper_id": d["paper_id"], "status": "duplicate", "duplicate_of": paper.paper_id,
                                    "error": f"same paper as {paper.paper_id} ({paper.venue} {paper.year})"}])
                row["aliases"] = sorted({*row["aliases"], d["paper_id"], *([d["arxiv_id"]] if d.get("arxiv_id") else [])})
        return False

    def _pdf(self, paper: SourcePaper, key: str, row: dict[str, Any]) -> bytes | None:
        if self.store.exists(RAW_PAPERS_BUCKET, key):
            row["pdf_key"] = key
            return self.store.get(RAW_PAPERS_BUCKET, key)
        if paper.source == "upload":
            row["status"], row["error"] = "pdf_error", "uploaded PDF disappeared before it was read"
            return None
        try:
            data = self.source.fetch_pdf(paper, self.config.max_pdf_mb * 1024**2)
        except PdfUnavailable as e:
            row["status"], row["error"] = "pdf_error", f"PDF unavailable: {e}"
            return None
        except Exception as e:  # a source bug must not stop the partition
            row["status"], row["error"] = "pdf_error", f"PDF download failed: {type(e).__name__}: {e}"
            return None
        if not looks_like_pdf(data):
            row["status"], row["error"] = "pdf_error", f"the source sent {len(data)} bytes that are not a PDF"
            return None
        self.store.put_once(RAW_PAPERS_BUCKET, key, data, "application/pdf")
        row["pdf_key"], row["downloaded"] = key, True
        return data

    def _text(self, pdf: bytes, key: str, row: dict[str, Any]) -> str:
        if self.store.exists(RAW_PAPERS_BUCKET, key):
            row["text_key"] = key
            text = self.store.get_text(RAW_PAPERS_BUCKET, key)
            row["text_chars"] = len(text)
            return text
        c = self.config
        try:
            extracted = extract_text(pdf, c.max_pages, c.max_chars, c.extract_time_limit_s)
        except TextExtractionError as e:
            row["status"], row["error"] = "pdf_error", str(e)
            return ""
        self.store.put_once(RAW_PAPERS_BUCKET, key, extracted.text.encode("utf-8"), "text/plain; charset=utf-8")
        row.update(text_key=key, pages=extracted.pages_total, text_chars=len(extracted.text), extracted=True)
        return extracted.text

    @staticmethod
    def _doc(row: dict[str, Any]) -> PaperDoc:
        return {k: v for k, v in row.items() if k not in ("downloaded", "extracted")}


@dg.asset(
    partitions_def=VENUE_YEAR,
    group_name="pipeline",
    kinds={"python", "pdf"},
    description="One row per paper of a venue/year: metadata, stored PDF and text keys, extraction status.",
)
def papers(context: dg.AssetExecutionContext, config: PapersConfig, sources: PaperSource, store: ObjectStore,
           index: PaperIndex) -> pd.DataFrame:
    venue, year = venue_year(context)
    start = time.monotonic()
    since = newest_published(index, venue, year) if config.incremental else None
    options = FetchOptions(search_term=config.search_term, max_papers=config.max_papers, offset=config.offset,
                           since=since)
    found: list[SourcePaper] = []
    listing_error = None
    try:
        for paper in sources.fetch_papers(venue, year, options):
            found.append(paper)
    except Exception as e:
        # Keep what was listed before the failure; the run says what went wrong.
        listing_error = f"listing stopped after {len(found)} papers: {type(e).__name__}: {e}"
        context.log.error(f"{venue} {year}: {listing_error}")
        if not found:
            raise dg.Failure(f"listing {venue} {year} failed: {type(e).__name__}: {e}") from e
    found += discover_uploads(store, venue, year, {p.paper_id for p in found})
    context.log.info(f"{venue} {year}: {len(found)} papers listed in {time.monotonic() - start:.1f}s")
    ingester = PaperIngester(sources, store, index, config, context.log)
    rows = []
    for i, paper in enumerate(found, 1):
        rows.append(ingester.ingest(paper))
        if i % 10 == 0 or i == len(found):
            context.log.info(f"{i}/{len(found)} papers stored")
    if config.incremental:
        # The partition's output holds all its papers, not only this run's new ones.
        seen = {r["paper_id"] for r in rows}
        columns = list(PaperIngester.empty_row(venue, year))
        rows += [{**{c: d.get(c) for c in columns}, "downloaded": False, "extracted": False}
                 for d in index.iter_docs(venue, year) if d["paper_id"] not in seen]
    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["paper_id", "status"])
    by_status = df["status"].value_counts().to_dict() if len(df) else {}
    context.add_output_metadata({
        "papers": len(df),
        "listing_error": listing_error or "",
        "since": since or "",
        "new_pdfs": int(df["downloaded"].sum()) if len(df) else 0,
        "new_texts": int(df["extracted"].sum()) if len(df) else 0,
        "by_status": dg.MetadataValue.json(by_status),
        "errors": int((df["status"] != "ok").sum()) if len(df) else 0,
        "duration_s": round(time.monotonic() - start, 2),
        "raw_papers": dg.MetadataValue.path(store.uri(RAW_PAPERS_BUCKET, f"papers/{venue}/{year}/")) if len(df) else "",
        "preview": dg.MetadataValue.md(markdown_table(df, ["paper_id", "title", "status", "error"])),
    })
    return df
