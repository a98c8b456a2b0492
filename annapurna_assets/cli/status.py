"""`annapurna status [--json]`: counts per stage, in total and per partition, from the paper index."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

from annapurna_resources.index import STAGE_KEYS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="counts per stage for the current ANNAPURNA_HOME")
    p.add_argument("--json", action="store_true", help="print JSON: stage counts at the top level and under partitions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from annapurna_assets.resources import build_index

    counts = build_index().counts()
    if args.json:
        print(json.dumps(counts, indent=2, sort_keys=True))
        return 0
    rows = [[key, *(c[k] for k in STAGE_KEYS), c["errors"]] for key, c in counts["partitions"].items()]
    rows.append(["total", *(counts[k] for k in STAGE_KEYS), counts["errors"]])
    print(tabulate(rows, headers=["partition", *STAGE_KEYS, "errors"]))
    return 0
