"""`annapurna request generate|info|list`: put generate requests on the request queue.

The requests sensor picks them up (SQS `code-evaluation.fifo` with ANNAPURNA_PROFILE=aws, the
spool folder under $ANNAPURNA_HOME otherwise) and starts a `generated_code` run per request.
"""

from __future__ import annotations

import argparse
import json
import sys

from annapurna_resources.queue import GenerateRequest, InvalidRequest, RequestQueue, parse_request


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("request", help="send a generate request to the request queue")
    sub = p.add_subparsers(dest="request_command", required=True)

    gen = sub.add_parser("generate", help="ask for a program for one or more papers")
    what = gen.add_mutually_exclusive_group(required=True)
    what.add_argument("--title", help="papers whose title matches (generate_by_title)")
    what.add_argument("--id", dest="paper_id", help="one paper id (generate_by_id)")
    what.add_argument("--ids", help="comma-separated paper ids (generate_by_ids)")
    what.add_argument("--author", help="papers by this author (generate_by_author)")
    what.add_argument("--keywords", help="comma-separated keywords, all must match (generate_by_keywords)")
    what.add_argument("--recent", action="store_true", help="the most recently published papers (generate_recent)")
    gen.add_argument("--max-papers", type=int, default=1, help="at most this many papers (default 1)")
    gen.add_argument("--json", action="store_true", help="print the message id and body as JSON")
    gen.set_defaults(func=run_generate)

    info = sub.add_parser("info", help="ask for a paper's record (get_paper_info); the answer is written "
                                       "to the results store under requests/<message id>/")
    which = info.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="paper_id")
    which.add_argument("--title")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=run_info)

    raw = sub.add_parser("send", help="send a request body as JSON, in the earlier design's format")
    raw.add_argument("body", help='e.g. \'{"action": "generate_by_title", "title": "...", "max_papers": 1}\'')
    raw.add_argument("--json", action="store_true")
    raw.set_defaults(func=run_send)

    lst = sub.add_parser("list", help="what waits in the queue (and, for the spool, what was moved aside)")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=run_list)


def request_from_args(args: argparse.Namespace) -> GenerateRequest:
    """The arguments as a request, validated exactly as the sensor will validate the message."""
    body: dict[str, object] = {"max_papers": args.max_papers}
    if args.title:
        body.update(action="generate_by_title", title=args.title)
    elif args.paper_id:
        body.update(action="generate_by_id", paper_id=args.paper_id)
    elif args.ids:
        body.update(action="generate_by_ids", paper_ids=[i.strip() for i in args.ids.split(",") if i.strip()])
    elif args.author:
        body.update(action="generate_by_author", author=args.author)
    elif args.keywords:
        body.update(action="generate_by_keywords", keywords=args.keywords)
    else:
        body.update(action="generate_recent")
    return parse_request(body)


def _queue() -> RequestQueue:
    from annapurna_assets.resources import build_queue

    return build_queue()


def _send(request: GenerateRequest, as_json: bool) -> int:
    queue = _queue()
    message_id = queue.send_request(request)
    if as_json:
        print(json.dumps({"message_id": message_id, "body": json.loads(request.to_body())}))
    else:
        print(f"queued {request.describe()} as message {message_id}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    try:
        request = request_from_args(args)
    except InvalidRequest as exc:
        print(f"annapurna request: {exc}", file=sys.stderr)
        return 2
    return _send(request, args.json)


def run_info(args: argparse.Namespace) -> int:
    body = {"action": "get_paper_info", "paper_id": args.paper_id} if args.paper_id else {
        "action": "get_paper_info", "title": args.title}
    try:
        request = parse_request(body)
    except InvalidRequest as exc:
        print(f"annapurna request: {exc}", file=sys.stderr)
        return 2
    return _send(request, args.json)


def run_send(args: argparse.Namespace) -> int:
    try:
        request = parse_request(args.body)
    except InvalidRequest as exc:
        print(f"annapurna request: {exc}", file=sys.stderr)
        return 2
    return _send(request, args.json)


def run_list(args: argparse.Namespace) -> int:
    from annapurna_resources.queue.spool import SpoolRequestQueue

    queue = _queue()
    if isinstance(queue, SpoolRequestQueue):
        waiting = [{"message_id": m.message_id, "body": m.body} for m in queue.receive(1000)]
        dead = queue.dead_letters()
        if args.json:
            print(json.dumps({"waiting": waiting, "dead_letter": dead}, indent=2))
        else:
            print(f"{len(waiting)} waiting in {queue.messages_dir}")
            for m in waiting:
                print(f"  {m['message_id']}  {m['body'][:100]}")
            print(f"{len(dead)} moved aside to {queue.dead_letter_dir}")
            for d in dead:
                print(f"  {d.get('message_id')}  {d.get('reason')}")
        return 0
    # SQS: receiving would hide messages from the sensor, so only the queue's own counts are shown.
    from annapurna_resources.queue.sqs import SqsRequestQueue

    assert isinstance(queue, SqsRequestQueue)
    attrs = queue.client().get_queue_attributes(
        QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    counts = {"waiting": int(attrs["ApproximateNumberOfMessages"]), "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"])}
    print(json.dumps(counts) if args.json else f"{counts['waiting']} waiting, {counts['in_flight']} in flight in {queue.url}")
    return 0
