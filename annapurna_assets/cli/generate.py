"""`annapurna generate` (the generate actions) and `annapurna info --id ...` (get_paper_info).

`generate` picks papers from the index, then materializes `judgments` and `generated_code` for each
partition holding one of them, through Dagster, with the request as run config; so a program made
here is exactly one the pipeline would make, stored and versioned the same way. `--save
--output-dir DIR` also writes each program (and its metadata) to DIR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="write programs for papers picked by id, title, author, keywords or date")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--id", dest="paper_id", help="generate_by_id: one paper id")
    pick.add_argument("--ids", help="generate_by_ids: comma-separated paper ids")
    pick.add_argument("--title", help="generate_by_title: best title matches")
    pick.add_argument("--author", help="generate_by_author: papers by this author")
    pick.add_argument("--keywords", help="generate_by_keywords: comma-separated; papers holding every one")
    pick.add_argument("--recent", type=int, metavar="N", help="generate_recent: the N most recent papers")
    p.add_argument("--max-papers", type=int, default=None, help="at most this many papers (default 1 for --title, else 10)")
    p.add_argument("--regenerate", action="store_true", help="write a new program even if one exists for this generator")
    p.add_argument("--save", action="store_true", help="also write the programs to --output-dir")
    p.add_argument("--output-dir", default="generated", help="where --save writes (default ./generated)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_generate)

    info = subparsers.add_parser("info", help="get_paper_info: a paper and where it stands in every stage")
    which = info.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="paper_id", help="paper id")
    which.add_argument("--title", help="best title match")
    info.set_defaults(func=run_info)


def request_from_args(args: argparse.Namespace) -> Any:
    from annapurna_assets.generate_actions import GenerateRequest

    def split(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    if args.paper_id:
        data: dict[str, Any] = {"action": "generate_by_id", "paper_id": args.paper_id}
    elif args.ids:
        data = {"action": "generate_by_ids", "paper_ids": split(args.ids)}
    elif args.title:
        data = {"action": "generate_by_title", "title": args.title, "max_papers": 1}
    elif args.author:
        data = {"action": "generate_by_author", "author": args.author}
    elif args.keywords:
        data = {"action": "generate_by_keywords", "keywords": split(args.keywords)}
    else:
        data = {"action": "generate_recent", "recent": args.recent}
    if args.max_papers:
        data["max_papers"] = args.max_papers
    return GenerateRequest.model_validate(data)


def save_programs(docs: list[dict[str, Any]], store: Any, output_dir: Path) -> list[Path]:
    """Write `<paper_id>.py` and `<paper_id>.json` (the index's code record) for each generated paper."""
    from annapurna_resources.settings import CODE_BUCKET

    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in docs:
        if not doc.get("code_key"):
            continue
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in doc["paper_id"])
        path = output_dir / f"{safe}.py"
        path.write_bytes(store.get(CODE_BUCKET, doc["code_key"]))
        meta = {"paper_id": doc["paper_id"], "title": doc.get("title"), "code_status": doc.get("code_status"),
                "code_key": doc["code_key"], "sha256": doc.get("code_sha256"), **(doc.get("code") or {})}
        (output_dir / f"{safe}.json").write_text(json.dumps(meta, indent=1, default=str))
        written.append(path)
    return written


def run_generate(args: argparse.Namespace) -> int:
    from annapurna_assets.instance import ensure_dagster_home

    ensure_dagster_home()
    import dagster as dg
    from tabulate import tabulate

    from annapurna_assets.definitions import PIPELINE_ASSETS
    from annapurna_assets.generate_actions import select_papers
    from annapurna_assets.partitions import partition_key
    from annapurna_assets.resources import build_resources

    request = request_from_args(args)
    resources = build_resources()  # from the environment now, so ANNAPURNA_LLM and ANNAPURNA_HOME apply
    index, store = resources["index"], resources["store"]
    selected = select_papers(index, request)
    if not selected:
        print(f"no paper matches {request.model_dump(exclude_defaults=True)}")
        return 1
    by_partition: dict[tuple[str, int], list[str]] = {}
    for doc in selected:
        by_partition.setdefault((doc["venue"], int(doc["year"])), []).append(doc["paper_id"])

    failures = []
    with dg.DagsterInstance.get() as instance:
        for (venue, year), ids in sorted(by_partition.items()):
            # The resolved ids go to the asset, so it writes exactly the papers listed here.
            config = {"action": "generate_by_ids", "paper_ids": ids, "max_papers": len(ids),
                      "regenerate": bool(args.regenerate)}
            result = dg.materialize(
                PIPELINE_ASSETS, partition_key=partition_key(venue, year), instance=instance, resources=resources,
                selection=["judgments", "generated_code"], raise_on_error=False,
                run_config={"ops": {"generated_code": {"config": config}},
                            "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            if not result.success:
                failures.append(f"{venue}|{year} (run {result.run_id})")

    docs = list(index.get_many([d["paper_id"] for d in selected]).values())
    rows = [{"paper_id": d["paper_id"], "title": (d.get("title") or "")[:60], "judge_status": d.get("judge_status"),
             "code_status": d.get("code_status"), "repair_rounds": (d.get("code") or {}).get("repair_rounds"),
             "code_key": d.get("code_key")} for d in docs]
    saved = save_programs(docs, store, Path(args.output_dir)) if args.save else []
    if args.json:
        print(json.dumps({"papers": rows, "saved": [str(p) for p in saved], "failed_runs": failures}, indent=2))
    else:
        print(tabulate(rows, headers="keys"))
        for path in saved:
            print(f"saved {path}")
        for f in failures:
            print(f"run failed: {f}")
    return 1 if failures else 0


def run_info(args: argparse.Namespace) -> int:
    from annapurna_assets.generate_actions import GenerateRequest, paper_info, select_papers
    from annapurna_assets.resources import build_index

    request = GenerateRequest(action="get_paper_info", paper_id=args.paper_id, title=args.title, max_papers=1)
    docs = select_papers(build_index(), request)
    if not docs:
        print(f"no paper {args.paper_id or repr(args.title)} in the index")
        return 1
    print(json.dumps(paper_info(docs[0]), indent=2, default=str))
    return 0
