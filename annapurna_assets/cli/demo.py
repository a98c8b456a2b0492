"""`annapurna demo`: run every demo partition through the whole graph, headless, through Dagster."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from tabulate import tabulate
from tqdm import tqdm

DEMO_TIME_BUDGET_S = "20"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the bundled demo corpus through papers -> judgments -> code -> tests")
    p.add_argument("--partition", action="append", help="only this partition (like iclr|2015); repeatable")
    p.add_argument("--time-budget", default=None, help=f"seconds each program may train (default {DEMO_TIME_BUDGET_S})")
    p.add_argument("-v", "--verbose", action="store_true", help="show Dagster's INFO logs (per program, METRICS lines)")
    p.set_defaults(func=run)


def _new_counts(result: Any) -> dict[str, int]:
    """How much this run really did, from the materialization metadata of each asset."""
    wanted = {"papers": "new_pdfs", "judgments": "new", "generated_code": "new", "test_results": "new_runs"}
    out = dict.fromkeys(wanted, 0)
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        name = mat.asset_key.path[-1]
        if name in wanted and wanted[name] in mat.metadata:
            out[name] += int(mat.metadata[wanted[name]].value)
    return out


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("ANNAPURNA_SOURCES", "demo")
    os.environ["ANNAPURNA_TIME_BUDGET_S"] = args.time_budget or os.environ.get("ANNAPURNA_TIME_BUDGET_S", DEMO_TIME_BUDGET_S)
    from annapurna_assets.instance import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg

    from annapurna_assets.definitions import defs
    from annapurna_assets.partitions import parse_partition, partition_key
    from annapurna_resources.settings import annapurna_home
    from annapurna_resources.sources.demo import demo_partitions

    wanted = [parse_partition(p) for p in args.partition] if args.partition else demo_partitions()
    job = defs.resolve_job_def("pipeline")
    start = time.monotonic()
    new_total = {"papers": 0, "judgments": 0, "generated_code": 0, "test_results": 0}
    failures = []
    with dg.DagsterInstance.get() as instance:
        bar = tqdm(wanted, desc="demo", unit="partition")
        for venue, year in bar:
            bar.set_postfix_str(f"{venue}|{year}")
            level = "INFO" if args.verbose else "WARNING"
            result = job.execute_in_process(
                partition_key=partition_key(venue, year), instance=instance, raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": level}}}},
            )
            if not result.success:
                failures.append(f"{venue}|{year} (run {result.run_id})")
            for k, v in _new_counts(result).items():
                new_total[k] += v
    wall = time.monotonic() - start

    index = defs.resources["index"]  # type: ignore[index]
    counts = index.counts()
    medians = _median_wall_by_partition(index)
    rows = []
    for venue, year in wanted:
        key = f"{venue}|{year}"
        c = counts["partitions"].get(key, {})
        rows.append([key, c.get("papers", 0), c.get("judged", 0), c.get("accepted", 0), c.get("generated", 0),
                     c.get("passed", 0), c.get("failed", 0), c.get("errors", 0), medians.get(key, "-")])
    rows.append(["total", *(sum(r[i] for r in rows) for i in range(1, 8)), "-"])
    print()
    print(tabulate(rows, headers=["partition", "papers", "judged", "accepted", "programs", "passed", "failed",
                                  "errors", "median run s"]))
    print()
    print(f"This run: {new_total['papers']} new PDFs, {new_total['judgments']} new judgments, "
          f"{new_total['generated_code']} new programs, {new_total['test_results']} new program runs "
          f"({'0 new: everything was already done' if not any(new_total.values()) else 'work done above'}) "
          f"in {wall:.0f}s.")
    print(f"Everything is kept under {annapurna_home()}; `annapurna status --json` counts it.")
    print("Open the Dagster UI on the same instance with `make ui`, then http://127.0.0.1:3000")
    if failures:
        print("Runs that failed: " + ", ".join(failures))
        return 1
    return 0


def _median_wall_by_partition(index: Any) -> dict[str, float]:
    walls: dict[str, list[float]] = {}
    for doc in index.iter_docs():
        t = doc.get("test") or {}
        if t.get("wall_s") is not None:
            walls.setdefault(f"{doc['venue']}|{doc['year']}", []).append(float(t["wall_s"]))
    return {k: round(statistics.median(v), 1) for k, v in walls.items()}
