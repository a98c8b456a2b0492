"""Search latency of the SQLite paper index with 100,000 papers.

Run by hand: `.venv/bin/python bench/bench_index_search.py [N]`. Builds an index of N synthetic
papers (all through its own upsert; titles and abstracts drawn from the words of the real recorded arXiv feed, so term
frequencies look like real abstracts), then times every query the interface offers and prints the
median and 95th percentile per query, and the ratio of each to a primary-key lookup.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annapurna_resources.index.sqlite import SqliteIndex  # noqa: E402
from annapurna_resources.sources.dedup import dedup_key  # noqa: E402

FIXTURE = REPO.parent / "shared" / "fixtures" / "arxiv" / "arxiv_query_testing_start0_max100.xml"
VENUES = ["iclr", "icml", "neurips", "mlsys", "arxiv"]


def vocabulary() -> list[str]:
    text = FIXTURE.read_text("utf-8") if FIXTURE.is_file() else "graph neural network attention model " * 50
    summaries = " ".join(re.findall(r"<summary>(.*?)</summary>", text, re.S)) or text
    return [w.lower() for w in re.findall(r"[A-Za-z]{3,}", summaries)]


def make_docs(n: int, rng: random.Random, words: list[str]) -> list[dict]:
    surnames = [w.capitalize() for w in set(words)][:2000]
    docs = []
    for i in range(n):
        title = " ".join(rng.choice(words) for _ in range(rng.randint(5, 12))).capitalize()
        authors = [f"{rng.choice('ABCDEFGHJKLMNPRSTW')}. {rng.choice(surnames)}" for _ in range(rng.randint(1, 6))]
        venue = VENUES[i % len(VENUES)]
        year = 2013 + i % 13
        docs.append({
            "paper_id": f"{venue}{year}-{i:06d}", "venue": venue, "year": year, "title": title, "authors": authors,
            "abstract": " ".join(rng.choice(words) for _ in range(rng.randint(120, 220))),
            "published": f"{year}-{1 + i % 12:02d}-{1 + i % 28:02d}", "status": "ok",
            "judge_status": rng.choice(["judged", None, None]), "code_status": rng.choice(["generated", None, None, None]),
            "dedup_key": dedup_key(title, authors),
        })
    return docs




def timed(fn, reps: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(7)
    words = vocabulary()
    docs = make_docs(n, rng, words)
    with tempfile.TemporaryDirectory() as tmp:
        index = SqliteIndex(path=str(Path(tmp) / "index.db"))
        # Every paper through the index's own upsert, in batches of 1,000, reporting the write rate
        # as the index grows (it should stay flat: FTS rows are updated by rowid).
        load_start = time.perf_counter()
        for i in range(0, n, 1000):
            start = time.perf_counter()
            index.upsert(docs[i : i + 1000])
            if i % 20_000 == 0 or i + 1000 >= n:
                rate = min(1000, n - i) / (time.perf_counter() - start)
                print(f"upsert with {i:6,} papers indexed: {rate:8,.0f} papers/s")
        print(f"loaded {n:,} papers through upsert in {time.perf_counter() - load_start:.1f} s")
        size_mb = (Path(tmp) / "index.db").stat().st_size / 1e6
        print(f"index: {n:,} papers, {size_mb:.0f} MB")

        sample = [docs[rng.randrange(n)] for _ in range(50)]
        it = iter(range(10**9))

        def pick() -> dict:
            return sample[next(it) % len(sample)]

        queries = {
            "get (primary key)": lambda: index.get(pick()["paper_id"]),
            "get_many (100 ids)": lambda: index.get_many(d["paper_id"] for d in sample[:100]),
            "search (2 words)": lambda: index.search(" ".join(pick()["title"].split()[:2])),
            "by_title (full)": lambda: index.by_title(pick()["title"]),
            "by_author": lambda: index.by_author(pick()["authors"][0]),
            "by_keywords (2)": lambda: index.by_keywords(pick()["abstract"].split()[3:5]),
            "recent (10)": lambda: index.recent(10),
            "by_status (judged, 1000)": lambda: index.by_status("judge_status", "judged", 1000),
            "by_dedup_key": lambda: index.by_dedup_key(pick()["dedup_key"]),
            "similar (abstract)": lambda: index.similar(pick()["abstract"], 5, max_year=2024),
            "iter_docs (one partition)": lambda: sum(1 for _ in index.iter_docs("iclr", 2018)),
            "counts (status --json)": lambda: index.counts(),
        }
        results = {}
        for name, fn in queries.items():
            reps = 5 if name.startswith(("counts", "iter_docs", "by_status")) else 30
            fn()  # warm the page cache
            results[name] = timed(fn, reps)
        base = statistics.median(results["get (primary key)"])
        print(f"{'query':28} {'median ms':>10} {'p95 ms':>10} {'x get':>8}")
        for name, times in results.items():
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            med = statistics.median(times)
            print(f"{name:28} {med:10.2f} {p95:10.2f} {med / base:8.1f}")


if __name__ == "__main__":
    main()
