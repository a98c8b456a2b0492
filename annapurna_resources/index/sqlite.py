"""The embedded paper index: SQLite with an FTS5 table over title, abstract and authors."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from annapurna_resources.index import STAGE_KEYS, PaperDoc, PaperIndex

_SCHEMA = """
CREATE TABLE IF NOT EXISTS papers (
    paper_id     TEXT PRIMARY KEY,
    venue        TEXT,
    year         INTEGER,
    title        TEXT,
    published    TEXT,
    dedup_key    TEXT,
    status       TEXT,
    judge_status TEXT,
    accepted     INTEGER,
    code_status  TEXT,
    test_status  TEXT,
    doc          TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS papers_partition ON papers (venue, year);
CREATE INDEX IF NOT EXISTS papers_dedup ON papers (dedup_key);
CREATE INDEX IF NOT EXISTS papers_published ON papers (published);
-- FTS rows share the rowid of their paper, so updating one is a lookup, not a scan.
CREATE VIRTUAL TABLE IF NOT EXISTS papers_fts USING fts5 (title, abstract, authors);
"""

_COLUMNS = ("venue", "year", "title", "published", "dedup_key", "status", "judge_status", "accepted",
            "code_status", "test_status")
# One writer at a time inside this process; SQLite's own lock covers other processes.
_WRITE_LOCK = threading.Lock()
_STATUS_FIELDS = ("status", "judge_status", "code_status", "test_status")
_FTS_FIELDS = ("title", "abstract", "authors")


# Words too common in abstracts to say anything about similarity.
STOPWORDS = frozenset(
    "the and for with that this from are was were which their these those its into than then over such "
    "can has have had not but our we also both each more most other some any all one two new use used "
    "using based show shows results paper propose proposed method methods approach model models".split()
)


def fts_query(text: str, operator: str = "OR", max_terms: int = 40) -> str:
    """Turn free text into a safe FTS5 query: quoted terms, so no user input is read as FTS syntax."""
    terms = [t for t in re.findall(r"[A-Za-z0-9]+", text.lower()) if len(t) > 2]
    seen: list[str] = []
    for t in terms:
        if t not in seen:
            seen.append(t)
    return f" {operator} ".join(f'"{t}"' for t in seen[:max_terms])


def distinctive_terms(text: str, max_terms: int = 12) -> str:
    """The longest non-stopwords of a text, as an OR query: long words are the rare ones, and a
    short query keeps bm25 ranking fast on a large index."""
    terms = {t for t in re.findall(r"[a-z0-9]+", text.lower()) if len(t) > 3 and t not in STOPWORDS}
    return " OR ".join(f'"{t}"' for t in sorted(terms, key=lambda t: (-len(t), t))[:max_terms])


class SqliteIndex(PaperIndex):
    path: str

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            yield conn
            conn.commit()
        finally:
            conn.close()

    def upsert(self, docs: list[PaperDoc]) -> None:
        if not docs:
            return
        now = datetime.now(UTC).isoformat()
        with _WRITE_LOCK, self._db() as db:
            for new in docs:
                pid = new["paper_id"]
                row = db.execute("SELECT doc FROM papers WHERE paper_id = ?", (pid,)).fetchone()
                old = json.loads(row[0]) if row else {}
                doc = {**old, **new}
                values = [doc.get(c) for c in _COLUMNS]
                values[_COLUMNS.index("accepted")] = int(bool(doc.get("accepted"))) if "accepted" in doc else None
                # An upsert, not INSERT OR REPLACE: the row keeps its rowid, which its FTS row shares.
                rowid = db.execute(
                    f"INSERT INTO papers (paper_id, {', '.join(_COLUMNS)}, doc, updated_at) "
                    f"VALUES (?, {', '.join('?' * len(_COLUMNS))}, ?, ?) "
                    f"ON CONFLICT (paper_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS)}, "
                    "doc = excluded.doc, updated_at = excluded.updated_at RETURNING rowid",
                    (pid, *values, json.dumps(doc, default=str), now),
                ).fetchone()[0]
                if not row or any(old.get(f) != doc.get(f) for f in _FTS_FIELDS):
                    if row:
                        db.execute("DELETE FROM papers_fts WHERE rowid = ?", (rowid,))
                    db.execute(
                        "INSERT INTO papers_fts (rowid, title, abstract, authors) VALUES (?, ?, ?, ?)",
                        (rowid, doc.get("title") or "", doc.get("abstract") or "", " ".join(doc.get("authors") or [])),
                    )

    def _docs(self, sql: str, params: Iterable[Any] = ()) -> list[PaperDoc]:
        with self._db() as db:
            return [json.loads(r[0]) for r in db.execute(sql, tuple(params))]

    def get_many(self, paper_ids: Iterable[str]) -> dict[str, PaperDoc]:
        ids = list(paper_ids)
        out: dict[str, PaperDoc] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for d in self._docs(f"SELECT doc FROM papers WHERE paper_id IN ({', '.join('?' * len(chunk))})", chunk):
                out[d["paper_id"]] = d
        return out

    def iter_docs(self, venue: str | None = None, year: int | None = None) -> Iterator[PaperDoc]:
        where, params = [], []
        if venue is not None:
            where.append("venue = ?")
            params.append(venue)
        if year is not None:
            where.append("year = ?")
            params.append(year)
        sql = "SELECT doc FROM papers" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY paper_id"
        yield from self._docs(sql, params)

    def _fts(self, match: str, limit: int, extra_where: str = "", params: Iterable[Any] = ()) -> list[PaperDoc]:
        if not match:
            return []
        sql = (
            "SELECT p.doc FROM papers_fts f JOIN papers p ON p.rowid = f.rowid "
            f"WHERE papers_fts MATCH ? {extra_where} ORDER BY bm25(papers_fts) LIMIT ?"
        )
        return self._docs(sql, [match, *params, limit])

    def search(self, query: str, limit: int = 20) -> list[PaperDoc]:
        # Papers holding every word first (fast and precise); any word only when those are too few.
        found = self._fts(fts_query(query, "AND"), limit)
        if len(found) < limit:
            have = {d["paper_id"] for d in found}
            found += [d for d in self._fts(fts_query(query), limit) if d["paper_id"] not in have][: limit - len(found)]
        return found

    def by_title(self, title: str, limit: int = 10) -> list[PaperDoc]:
        terms = fts_query(title, "AND")
        return self._fts(f"title : ({terms})", limit) if terms else []

    def by_author(self, author: str, limit: int = 50) -> list[PaperDoc]:
        terms = fts_query(author, "AND")
        return self._fts(f"authors : ({terms})", limit) if terms else []

    def by_keywords(self, keywords: list[str], limit: int = 50) -> list[PaperDoc]:
        terms = fts_query(" ".join(keywords), "AND")
        return self._fts(f"{{title abstract}} : ({terms})", limit) if terms else []

    def recent(self, limit: int = 10) -> list[PaperDoc]:
        return self._docs("SELECT doc FROM papers ORDER BY published DESC, paper_id LIMIT ?", [limit])

    def by_status(self, field: str, status: str, limit: int = 1000) -> list[PaperDoc]:
        if field not in _STATUS_FIELDS:
            raise ValueError(f"field must be one of {_STATUS_FIELDS}")
        return self._docs(f"SELECT doc FROM papers WHERE {field} = ? ORDER BY paper_id LIMIT ?", [status, limit])

    def by_dedup_key(self, dedup_key: str) -> list[PaperDoc]:
        return self._docs("SELECT doc FROM papers WHERE dedup_key = ? ORDER BY paper_id", [dedup_key])

    def similar(self, text: str, limit: int = 5, exclude: Iterable[str] = (), max_year: int | None = None) -> list[PaperDoc]:
        excluded = list(exclude)
        where = ""
        params: list[Any] = []
        if excluded:
            where += f" AND p.paper_id NOT IN ({', '.join('?' * len(excluded))})"
            params += excluded
        if max_year is not None:
            where += " AND p.year <= ?"
            params.append(max_year)
        where += " AND COALESCE(p.status, 'ok') != 'duplicate'"
        return self._fts(distinctive_terms(text), limit, where, params)

    def counts(self) -> dict[str, Any]:
        # Aggregated in SQL so `status` stays fast on a large index.
        sql = """
            SELECT venue, year, COUNT(*),
                   SUM(COALESCE(status, 'ok') != 'ok'),
                   SUM(judge_status = 'judged'),
                   SUM(judge_status = 'judged' AND accepted = 1),
                   SUM(code_status = 'generated'),
                   SUM(test_status IS NOT NULL),
                   SUM(test_status = 'passed')
            FROM papers GROUP BY venue, year ORDER BY venue, year"""
        partitions: dict[str, dict[str, int]] = {}
        with self._db() as db:
            for venue, year, n, errors, judged, accepted, generated, tested, passed in db.execute(sql):
                partitions[f"{venue}|{year}"] = {
                    "papers": n, "judged": judged or 0, "accepted": accepted or 0, "generated": generated or 0,
                    "tested": tested or 0, "passed": passed or 0, "failed": (tested or 0) - (passed or 0),
                    "errors": errors or 0,
                }
        total = {k: sum(p[k] for p in partitions.values()) for k in (*STAGE_KEYS, "errors")}
        return {**total, "partitions": dict(sorted(partitions.items()))}
