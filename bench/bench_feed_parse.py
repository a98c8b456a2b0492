"""Parse throughput of a large arXiv feed: the recorded 100-entry feed replicated to N entries.

Run by hand: `.venv/bin/python bench/bench_feed_parse.py [N]`. Prints entries per second for
(1) the arxiv package's Atom parser alone, (2) parser + conversion to SourcePaper, and (3) the whole
fetch path (arxiv.Client over HTTP from a local server, paging, year filter, conversion), and the
ratios between them, so a slowdown shows which layer it came from.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from arxiv import _feed  # noqa: E402  (the parser arxiv.Client itself uses)

from annapurna_resources.sources import FetchOptions  # noqa: E402
from annapurna_resources.sources.arxiv_source import ArxivFetcher, check_atom_feed, result_to_paper  # noqa: E402
from tests.http_replay import ReplayServer, paginated_atom_feed, split_atom_feed  # noqa: E402

FIXTURE = REPO.parent / "shared" / "fixtures" / "arxiv" / "arxiv_query_testing_start0_max100.xml"


def replicate(feed: bytes, n: int) -> bytes:
    head, entries, tail = split_atom_feed(feed)
    out = []
    for i in range(n):
        entry = entries[i % len(entries)]
        # Distinct ids, so nothing downstream can dedup the copies away.
        entry = re.sub(rb"<id>[^<]*</id>", b"<id>http://arxiv.org/abs/%04d.%05dv1</id>" % (1000 + i // 100000, i % 100000), entry)
        out.append(entry)
    head = re.sub(rb"<opensearch:totalResults>\d+<", b"<opensearch:totalResults>%d<" % n, head)
    return head + b"".join(out) + tail


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    if not FIXTURE.is_file():
        sys.exit(f"fixture not found: {FIXTURE}")
    big = replicate(FIXTURE.read_bytes(), n)
    print(f"feed: {n} entries, {len(big) / 1e6:.1f} MB")

    parsed = _feed.parse(big)
    assert len(parsed.results) == n, len(parsed.results)
    t_parse = best_of(3, lambda: _feed.parse(big))
    t_check = best_of(3, lambda: check_atom_feed(big))
    t_convert = best_of(3, lambda: [result_to_paper(r) for r in _feed.parse(big).results])

    fetched: list = []
    expected = len([r for r in parsed.results if r.published.year == 2024])
    with ReplayServer({"/api/query": paginated_atom_feed(big)}) as srv:
        def full() -> None:
            fetched.clear()
            fetcher = ArxivFetcher(api_url=srv.url + "/api/query", delay_s=0.0, page_size=1000)
            fetched.extend(fetcher.fetch(2024, FetchOptions()))
        t_full = best_of(3, full)
    assert len(fetched) == expected, (len(fetched), expected)

    rate = lambda t: n / t  # noqa: E731
    print(f"parse only           : {rate(t_parse):10,.0f} entries/s  ({t_parse * 1000:.0f} ms)")
    print(f"feed check           : {len(big) / t_check / 1e9:10,.1f} GB/s     ({t_check * 1000:.1f} ms)")
    print(f"parse + SourcePaper  : {rate(t_convert):10,.0f} entries/s  ({t_convert * 1000:.0f} ms)")
    print(f"full fetch over HTTP : {rate(t_full):10,.0f} entries/s  ({t_full * 1000:.0f} ms; "
          f"client paging 1000/page, {expected} of {n} kept for 2024)")
    print(f"ratio convert/parse  : {t_convert / t_parse:.2f}x")
    print(f"ratio full/parse     : {t_full / t_parse:.2f}x")


if __name__ == "__main__":
    main()
