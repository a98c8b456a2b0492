"""PDF text extraction with pypdf, capped in pages, characters and time; and reading a paper's
title and abstract back out of its text (for PDFs dropped into the store without metadata)."""

from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass

import pypdf
from pypdf.errors import PyPdfError

MAX_PDF_BYTES = 50 * 1024 * 1024


class TextExtractionError(Exception):
    pass


@dataclass(frozen=True)
class ExtractedText:
    text: str
    pages_read: int
    pages_total: int
    truncated: bool


def looks_like_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(b"%PDF-")


def extract_text(data: bytes, max_pages: int = 30, max_chars: int = 200_000, time_limit_s: float = 30.0) -> ExtractedText:
    """Raises TextExtractionError with a reason a person can act on; never anything else."""
    if not looks_like_pdf(data):
        raise TextExtractionError("not a PDF (no %PDF- header)")
    start = time.monotonic()
    # pypdf logs every recovered defect; the error we raise says what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise TextExtractionError("PDF is encrypted with a password")
            except (NotImplementedError, PyPdfError) as e:
                raise TextExtractionError(f"PDF is encrypted and cannot be opened: {e}") from e
        total = len(reader.pages)
        parts: list[str] = []
        chars = 0
        truncated = False
        read = 0
        for page in reader.pages[:max_pages]:
            if time.monotonic() - start > time_limit_s:
                truncated = True
                break
            page_text = page.extract_text() or ""
            parts.append(page_text)
            chars += len(page_text)
            read += 1
            if chars >= max_chars:
                truncated = True
                break
        truncated = truncated or total > read
        text = "\n".join(parts)[:max_chars]
    except TextExtractionError:
        raise
    except Exception as e:  # pypdf raises many types on broken files; all mean "unreadable"
        raise TextExtractionError(f"pypdf could not read the PDF: {type(e).__name__}: {e}") from e
    if not text.strip():
        raise TextExtractionError(f"no extractable text in {read} page(s) (scanned or empty PDF?)")
    return ExtractedText(text=text, pages_read=read, pages_total=total, truncated=truncated)


_HEADING = re.compile(r"^\s*(?:\d+\.?\s+|[IVX]+\.\s+)?(introduction|keywords|index terms|1\s+introduction)\b", re.I)


_NOT_TITLE = re.compile(
    r"proceedings of|pages \d|©|\(c\)|association for|conference on|workshop|arxiv|preprint|published as|"
    r"under review|copyright|^\d+$",
    re.I,
)
_CONTINUES = re.compile(r"\b(of|for|and|in|on|with|to|the|a|an|via|from|by)$|[:\-–]$", re.I)


def title_and_abstract_from_text(text: str) -> tuple[str, str]:
    """Best effort: the title is the first substantial line that is not a running header (joined
    with the next when it visibly continues), the abstract the paragraph after an 'Abstract'
    heading up to the next section heading. Either may come back empty."""
    lines = [ln.strip() for ln in text.splitlines()]
    title = ""
    for i, ln in enumerate(lines):
        if len(ln) >= 8 and not _NOT_TITLE.search(ln) and ln.lower() != "abstract":
            title = ln
            if _CONTINUES.search(ln) and i + 1 < len(lines) and lines[i + 1]:
                title = f"{ln} {lines[i + 1]}"
            break
    abstract_lines: list[str] = []
    inside = False
    for ln in lines:
        if not inside:
            m = re.match(r"^\s*abstract\b[\s.:—-]*(.*)$", ln, re.I)
            if m:
                inside = True
                if m.group(1):
                    abstract_lines.append(m.group(1))
            continue
        if _HEADING.match(ln):
            break
        abstract_lines.append(ln)
    # Undo end-of-line hyphenation ("cor-\npus") before joining the lines.
    joined = re.sub(r"(\w)-\n(\w)", r"\1\2", "\n".join(abstract_lines))
    abstract = re.sub(r"\s+", " ", joined).strip()
    return title[:500], abstract[:5000]
