"""`annapurna scrape VENUE YEAR`: materialize that `papers` partition through Dagster, with progress.

The run is an ordinary run of the `pipeline` job restricted to `papers`, recorded in the Dagster
instance like one started from the UI. Sources default to the live services here (a scrape of the
demo corpus is what `annapurna demo` is for); set ANNAPURNA_SOURCES=demo to override.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from tqdm import tqdm


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("scrape", help="fetch one venue/year's papers (PDF + text + index) through Dagster")
    p.add_argument("venue", help="iclr | icml | neurips | mlsys | arxiv")
    p.add_argument("year", type=int)
    p.add_argument("--search-term", default=None, help="only papers matching this term")
    p.add_argument("--max-papers", type=int, default=None, help="stop after this many papers")
    p.add_argument("--offset", type=int, default=0, help="skip this many papers first (batching a big venue)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Dagster's INFO logs")
    p.set_defaults(func=run)


def papers_run_config(search_term: str | None, max_papers: int | None, offset: int, verbose: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"offset": offset}
    if search_term:
        config["search_term"] = search_term
    if max_papers is not None:
        config["max_papers"] = max_papers
    return {
        "ops": {"papers": {"config": config}},
        "loggers": {"console": {"config": {"log_level": "INFO" if verbose else "WARNING"}}},
    }


def _count(index: Any, venue: str, year: int) -> int:
    return sum(1 for _ in index.iter_docs(venue, year))


class _Progress:
    """Counts the partition's papers in the index while the run works, so the bar moves per paper."""

    def __init__(self, index: Any, venue: str, year: int, total: int | None) -> None:
        self.index, self.venue, self.year = index, venue, year
        self.start = _count(index, venue, year)
        # Counts papers new to the index; a re-run of a done partition rightly stays at 0.
        self.bar = tqdm(total=total, desc=f"{venue}|{year} new papers", unit="paper")
        if self.start:
            self.bar.set_postfix_str(f"{self.start} already indexed")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._update()

    def _update(self) -> None:
        try:
            done = _count(self.index, self.venue, self.year) - self.start
        except Exception:  # a busy index only delays the bar
            return
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        self.bar.close()


def _papers_metadata(result: Any) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.path[-1] == "papers":
            return {k: v.value for k, v in mat.metadata.items()}
    return {}


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ANNAPURNA_SOURCES", "live")
    from annapurna_assets.instance import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    from annapurna_assets.partitions import VENUE_YEAR, partition_key
    from annapurna_resources.sources import VENUES

    if args.venue not in VENUES:
        print(f"venue must be one of {', '.join(VENUES)}, not {args.venue!r}")
        return 2
    key = partition_key(args.venue, args.year)
    if not VENUE_YEAR.has_partition_key(key):
        print(f"no partition {args.venue}|{args.year}: years run from the first partition to this year")
        return 2
    if (args.max_papers is not None and args.max_papers < 1) or args.offset < 0:
        print("--max-papers must be at least 1 and --offset at least 0")
        return 2

    # Imported only now: building the resources reads the profile and the sources' settings.
    from annapurna_assets.definitions import defs

    index = defs.resources["index"]  # type: ignore[index]
    job = defs.resolve_job_def("pipeline")
    start = time.monotonic()
    with dg.DagsterInstance.get() as instance, _Progress(index, args.venue, args.year, args.max_papers):
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            asset_selection=[dg.AssetKey("papers")],
            run_config=papers_run_config(args.search_term, args.max_papers, args.offset, args.verbose),
            raise_on_error=False,
        )
    wall = time.monotonic() - start
    meta = _papers_metadata(result)
    if not result.success:
        failure = next((e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"), "")
        print(f"scrape of {args.venue}|{args.year} failed (run {result.run_id}): {failure}")
        return 1
    print(
        f"{args.venue}|{args.year}: {meta.get('papers', 0)} papers, {meta.get('new_pdfs', 0)} new PDFs, "
        f"{meta.get('new_texts', 0)} new texts, {meta.get('errors', 0)} with errors "
        f"{meta.get('by_status', {})} in {wall:.0f}s (run {result.run_id})."
    )
    return 0
