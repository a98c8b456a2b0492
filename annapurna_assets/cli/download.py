"""`annapurna download <what> ...`: copy stored things out of the object store to a local folder.

`download code [--partition P] [--id ID] DIR` copies every stored version of every program (and the
metadata beside each) keeping the store's layout under DIR. Each target is a sub-subcommand of
its own, so `download results` can join as one more `add_parser` in `register`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("download", help="copy stored programs (or other artifacts) to a local folder")
    targets = p.add_subparsers(dest="target", required=True)

    code = targets.add_parser("code", help="programs with their metadata (every stored version)")
    code.add_argument("--partition", help="only this partition, like iclr|2025")
    code.add_argument("--id", dest="paper_id", help="only this paper")
    code.add_argument("dir", help="destination folder")
    code.set_defaults(func=run_code)

    results = targets.add_parser("results", help="program runs: stdout, stderr, metrics.json, training curves")
    results.add_argument("--partition", help="only this partition, like iclr|2025")
    results.add_argument("--id", dest="paper_id", help="only this paper")
    results.add_argument("dir", help="destination folder")
    results.set_defaults(func=run_results)


def code_prefixes(index: Any, partition: str | None, paper_id: str | None) -> list[str]:
    """Key prefixes under the code bucket that hold what was asked for."""
    from annapurna_assets.partitions import parse_partition

    if paper_id:
        doc = index.get(paper_id)
        if doc is None:
            return []
        return [f"programs/{doc['venue']}/{doc['year']}/{paper_id}/"]
    if partition:
        venue, year = parse_partition(partition)
        return [f"programs/{venue}/{year}/"]
    return ["programs/"]


def copy_prefixes(store: Any, bucket: str, prefixes: list[str], dest: Path) -> list[Path]:
    written = []
    for prefix in prefixes:
        for key in store.list_keys(bucket, prefix):
            target = (dest / key).resolve()
            if dest.resolve() not in target.parents:  # a hostile key must not write outside DIR
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get(bucket, key))
            written.append(target)
    return written


def run_code(args: argparse.Namespace) -> int:
    from annapurna_assets.resources import build_index, build_store
    from annapurna_resources.settings import CODE_BUCKET

    prefixes = code_prefixes(build_index(), args.partition, args.paper_id)
    if not prefixes:
        print(f"no paper {args.paper_id} in the index")
        return 1
    written = copy_prefixes(build_store(), CODE_BUCKET, prefixes, Path(args.dir))
    programs = [p for p in written if p.suffix == ".py"]
    print(f"copied {len(programs)} program versions ({len(written)} files) to {args.dir}")
    return 0 if written else 1


def results_prefixes(index: Any, partition: str | None, paper_id: str | None) -> list[str]:
    """Key prefixes under the results bucket: runs are kept as runs/<venue>/<year>/<paper_id>/..."""
    return ["runs/" + p.removeprefix("programs/") for p in code_prefixes(index, partition, paper_id)]


def run_results(args: argparse.Namespace) -> int:
    from annapurna_assets.resources import build_index, build_store
    from annapurna_resources.settings import RESULTS_BUCKET

    prefixes = results_prefixes(build_index(), args.partition, args.paper_id)
    if not prefixes:
        print(f"no paper {args.paper_id} in the index")
        return 1
    written = copy_prefixes(build_store(), RESULTS_BUCKET, prefixes, Path(args.dir))
    runs = {p.parent for p in written}
    print(f"copied {len(runs)} runs ({len(written)} files) to {args.dir}")
    return 0 if written else 1
