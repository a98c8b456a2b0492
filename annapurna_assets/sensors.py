"""Sensors that keep the pipeline moving by itself.

- `new_papers_sensor`: papers that appear in the raw-papers store without the pipeline having put
  them there (a person's upload, another scraper) -> an `ingest_and_judge` run (papers + judgments)
  for their partition.
- `requests_sensor`: generate requests from the request queue -> `generate_code` runs
  (judgments + generated_code) for the partitions of the papers they name.
- `test_batch_sensor`: programs waiting untested -> `test_results` runs, in batches, because each
  batch starts (and stops) the Trainium host.

Stages that simply follow their upstream (judgments after papers, programs after judgments) do
so through declarative automation (`AutomationCondition.eager()`, see `with_automation`), not
through these sensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from annapurna_assets.partitions import VENUE_YEAR
from annapurna_resources.index import PaperDoc, PaperIndex
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.queue import (
    GenerateRequest,
    InvalidRequest,
    QueueMessage,
    RequestQueue,
    parse_request,
)
from annapurna_resources.settings import CODE_BUCKET, RAW_PAPERS_BUCKET, RESULTS_BUCKET

RUN_KEY_TAG = "dagster/run_key"
PARTITION_TAG = "dagster/partition"
# Runs in these states still may write the partition: a sensor waits for them instead of piling on.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


# Tick intervals and batch sizes: environment variables, so a test (or a busy deployment) can
# change them without touching code.
NEW_PAPERS_INTERVAL_S = _env_int("ANNAPURNA_NEW_PAPERS_INTERVAL_S", 60)
REQUESTS_INTERVAL_S = _env_int("ANNAPURNA_REQUESTS_INTERVAL_S", 30)
TEST_BATCH_INTERVAL_S = _env_int("ANNAPURNA_TEST_BATCH_INTERVAL_S", 120)
TEST_BATCH_SIZE = _env_int("ANNAPURNA_TEST_BATCH_SIZE", 10)
TEST_BATCH_MAX_WAIT_S = _env_int("ANNAPURNA_TEST_BATCH_MAX_WAIT_S", 3600)
# How many venue/year prefixes the new-papers sensor lists in full per tick (see scan_raw_papers).
SWEEP_PREFIXES_PER_TICK = _env_int("ANNAPURNA_SWEEP_PREFIXES_PER_TICK", 5)

ingest_and_judge_job = dg.define_asset_job(
    "ingest_and_judge",
    selection=dg.AssetSelection.assets("papers", "judgments"),
    description="Ingest a venue/year's papers (including PDFs dropped into the raw-papers store) and judge them.",
)
# judgments too: a requested paper must be judged before a program is written for it, and
# judging an already-judged paper costs nothing (keyed by content hash, prompt and model).
generate_code_job = dg.define_asset_job(
    "generate_code",
    selection=dg.AssetSelection.assets("judgments", "generated_code"),
    description="Write programs for a venue/year's accepted papers and the papers a request names.",
)
test_batch_job = dg.define_asset_job(
    "test_batch",
    selection=dg.AssetSelection.assets("test_results"),
    description="Run a venue/year's untested programs on the executor host.",
)


def with_automation(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`judgments` and `generated_code` follow their upstream partition by partition (eager).

    Declarative automation rather than more sensors: it already knows, per partition, whether the
    upstream changed since the last run, whether a run is in flight and whether an upstream is
    missing, and it shows why it did (or did not) request a run in the UI. `test_results` is left
    to the test-batch sensor, since every run of it starts the Trainium host.
    """
    out = []
    for a in assets:
        if set(a.keys) & {dg.AssetKey("judgments"), dg.AssetKey("generated_code")}:
            out.append(a.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=dg.AutomationCondition.eager())))  # type: ignore[arg-type]
        else:
            out.append(a)
    return out


automation_sensor = dg.AutomationConditionSensorDefinition(
    "annapurna_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=_env_int("ANNAPURNA_AUTOMATION_INTERVAL_S", 30),
    description="Runs judgments and generated_code for partitions whose upstream changed.",
)


# ------------------------------------------------------------------ helpers on the instance


def existing_run_keys(instance: dg.DagsterInstance, run_keys: Iterable[str]) -> set[str]:
    """The run keys that already belong to a run (of any status): their work is on record."""
    found = set()
    for key in run_keys:
        if instance.get_run_records(filters=dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1):
            found.add(key)
    return found


def busy_partitions(instance: dg.DagsterInstance, partition_keys: Iterable[str]) -> set[str]:
    """Partitions with an unfinished run, which may still write them: a sensor waits for it
    rather than request a second run that would read half-written state."""
    return {
        pk for pk in partition_keys
        if instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: pk}, statuses=UNFINISHED), limit=1)
    }


def short_hash(items: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(items)).encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------ new papers


def raw_prefixes(partition_keys: Iterable[str]) -> list[str]:
    """`iclr|2025` -> `papers/iclr/2025/`: the store is only ever listed one partition at a time."""
    out = []
    for pk in partition_keys:
        venue, _, year = pk.partition("|")
        out.append(f"papers/{venue}/{year}/")
    return out


_PAPER_FILE = re.compile(r"^papers/(?P<venue>[a-z]+)/(?P<year>\d{4})/(?P<stem>[A-Za-z0-9][A-Za-z0-9._-]*)\.(?P<ext>pdf|json)$")


def paper_of_key(key: str) -> tuple[str, str] | None:
    """(partition key, paper id) for a paper's PDF or metadata directly under its venue/year folder;
    None for the pipeline's derived files (.txt), temporary files and anything else."""
    m = _PAPER_FILE.match(key)
    if not m:
        return None
    return f"{m['venue']}|{m['year']}", m["stem"]


@dataclass
class RawScan:
    """What one tick of the new-papers sensor found."""

    # partition key -> paper files the index does not know yet
    unknown: dict[str, list[str]] = field(default_factory=dict)
    cursor: dict[str, Any] = field(default_factory=dict)
    listed_prefixes: int = 0
    swept: list[str] = field(default_factory=list)


def scan_raw_papers(
    store: ObjectStore,
    index: PaperIndex,
    prefixes: Sequence[str],
    cursor: dict[str, Any],
    sweep_per_tick: int = SWEEP_PREFIXES_PER_TICK,
    hold: Iterable[str] = (),
) -> RawScan:
    """Find paper files under `prefixes` that the index does not know.

    Two passes keep each tick small without missing anything:
    - fast: each prefix is listed only after the largest key seen there (`after`), so a tick
      costs one short listing per prefix however many papers the store holds;
    - sweep: a few prefixes per tick (round robin) are listed in full, which finds a new key that
      sorts before one already seen (`alpha.pdf` dropped after `zeta.pdf`).
    A file is new when the index has no paper of its id: whatever the papers asset ingested it
    indexed (also failures and duplicates), so its own writes never trigger a run.
    Prefixes in `hold` (partitions being written right now) keep their position for a later tick.
    """
    after: dict[str, str] = dict(cursor.get("after", {}))
    sweep_pos = int(cursor.get("sweep", 0))
    held = set(hold)
    scan = RawScan()
    candidates: dict[str, set[str]] = {}
    for prefix in prefixes:
        if prefix in held:
            continue
        for obj in store.list_objects(RAW_PAPERS_BUCKET, prefix, start_after=after.get(prefix)):
            after[prefix] = obj.key  # listings come in key order: the last one is the largest
            if paper_of_key(obj.key):
                candidates.setdefault(prefix, set()).add(obj.key)
        scan.listed_prefixes += 1
    if prefixes and sweep_per_tick > 0:
        n = min(sweep_per_tick, len(prefixes))
        for i in range(n):
            prefix = prefixes[(sweep_pos + i) % len(prefixes)]
            if prefix in held:
                continue
            scan.swept.append(prefix)
            for obj in store.list_objects(RAW_PAPERS_BUCKET, prefix):
                if paper_of_key(obj.key):
                    candidates.setdefault(prefix, set()).add(obj.key)
        sweep_pos = (sweep_pos + n) % len(prefixes)
    by_paper: dict[str, list[tuple[str, str]]] = {}
    for keys in candidates.values():
        for key in keys:
            parsed = paper_of_key(key)
            if parsed:
                by_paper.setdefault(parsed[1], []).append((parsed[0], key))
    known = index.get_many(list(by_paper)) if by_paper else {}
    for paper_id, entries in by_paper.items():
        doc = known.get(paper_id)
        for pk, key in entries:
            # Same id in another venue/year is another paper as far as this folder is concerned.
            if doc is None or f"{doc.get('venue')}|{doc.get('year')}" != pk:
                scan.unknown.setdefault(pk, []).append(key)
    for keys in scan.unknown.values():
        keys.sort()
    scan.cursor = {"after": after, "sweep": sweep_pos}
    return scan


# The run is for the dropped files: `incremental` keeps it from listing the source's whole year
# again (the papers asset takes the uploads in either way, and its output still holds every paper).
INGEST_RUN_CONFIG = {"ops": {"papers": {"config": {"incremental": True}}}}


def new_paper_run_requests(unknown: dict[str, list[str]]) -> list[dg.RunRequest]:
    """One ingest-and-judge run per partition; the run key names the exact set of files, so the
    same files never start a second run while a new file does."""
    return [
        dg.RunRequest(
            run_key=f"new-papers:{pk}:{short_hash(keys)}",
            partition_key=pk,
            run_config=INGEST_RUN_CONFIG,
            tags={"annapurna/trigger": "new_papers", "annapurna/new_files": str(len(keys))},
        )
        for pk, keys in sorted(unknown.items())
    ]


@dg.sensor(
    name="new_papers_sensor",
    job=ingest_and_judge_job,
    minimum_interval_seconds=NEW_PAPERS_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Papers dropped into the raw-papers store (papers/<venue>/<year>/) enter the pipeline and are judged.",
)
def new_papers_sensor(context: dg.SensorEvaluationContext, store: ObjectStore, index: PaperIndex) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {}
    partitions = VENUE_YEAR.get_partition_keys()
    prefixes = raw_prefixes(partitions)
    busy = busy_partitions(context.instance, partitions_with_files(cursor, partitions))
    scan = scan_raw_papers(store, index, prefixes, cursor, hold=raw_prefixes(busy))
    requests = new_paper_run_requests(scan.unknown)
    for r in requests:
        context.log.info(f"{r.partition_key}: {len(scan.unknown[r.partition_key or ''])} new paper file(s), "
                         f"e.g. {scan.unknown[r.partition_key or ''][0]}")
    if busy:
        context.log.info(f"waiting for running partitions: {sorted(busy)}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(scan.cursor, sort_keys=True))


def partitions_with_files(cursor: dict[str, Any], partitions: Sequence[str]) -> list[str]:
    """Only partitions the store has ever shown files for can be busy writing them; the rest need
    no run look-up (70 look-ups per tick would be wasted on empty venue/years)."""
    seen = set(cursor.get("after", {}))
    return [pk for pk, prefix in zip(partitions, raw_prefixes(partitions), strict=True) if prefix in seen]


# ------------------------------------------------------------------ generate requests


@dataclass
class ResolvedRequest:
    """Which papers a request names, grouped by partition; `error` when it names none."""

    by_partition: dict[str, list[str]] = field(default_factory=dict)
    docs: list[PaperDoc] = field(default_factory=list)
    error: str | None = None


def resolve_request(request: GenerateRequest, index: PaperIndex) -> ResolvedRequest:
    """Find the papers a request names in the index (as the earlier design's Lambda searched
    OpenSearch), with the same selection `annapurna generate` uses."""
    from annapurna_assets.generate_actions import GenerateRequest as RunRequestConfig
    from annapurna_assets.generate_actions import select_papers

    docs = select_papers(index, RunRequestConfig.from_message(json.loads(request.to_body())))
    # A duplicate (an arXiv preprint of a venue paper) stands for its canonical record.
    canonical_ids = [d["duplicate_of"] for d in docs if d.get("status") == "duplicate" and d.get("duplicate_of")]
    canonical = index.get_many(canonical_ids) if canonical_ids else {}
    out: list[PaperDoc] = []
    for d in docs:
        if d.get("status") == "duplicate" and d.get("duplicate_of") in canonical:
            d = canonical[d["duplicate_of"]]
        if all(d["paper_id"] != o["paper_id"] for o in out):
            out.append(d)
    resolved = ResolvedRequest(docs=out)
    for d in out:
        resolved.by_partition.setdefault(f"{d['venue']}|{d['year']}", []).append(d["paper_id"])
    if not out:
        resolved.error = f"no paper in the index matches {request.describe()}"
    return resolved


def request_run_key(message_id: str, partition: str, n_partitions: int) -> str:
    # The message id itself when the request names one partition (the usual case), so a person
    # can find the run from the id the queue gave them.
    return message_id if n_partitions == 1 else f"{message_id}:{partition}"


def generate_run_config(paper_ids: list[str]) -> dict[str, Any]:
    """Run config naming the exact papers the sensor resolved, so the run writes programs for
    those papers (judged, accepted or not: a person asked) and not for whatever matches later."""
    config = {"action": "generate_by_ids", "paper_ids": paper_ids, "max_papers": len(paper_ids)}
    return {"ops": {"generated_code": {"config": config}}}


@dataclass
class RequestTick:
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    # message id -> {"handle": receipt handle, "run_keys": [...], "since": epoch s}: to delete once the runs exist
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    # message id -> how many ticks failed on it for reasons other than its content (messages of this tick only)
    failures: dict[str, int] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    dead_lettered: list[tuple[str, str]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def dead_letter(self, queue: RequestQueue, message: QueueMessage, reason: str) -> None:
        queue.dead_letter(message, reason)
        self.dead_lettered.append((message.message_id, reason))
        self.pending.pop(message.message_id, None)
        self.log.append(f"message {message.message_id} moved to the dead-letter queue: {reason}")


# A message whose processing raised this many times (the index down, a bug) is moved aside, so it
# cannot hold the queue up; SQS's redrive policy is the same rule for messages nobody deletes.
MAX_REQUEST_ATTEMPTS = 5
# A request whose runs never appear (its run requests were refused) is forgotten after a day; the
# message itself is still in the queue and is looked at again.
PENDING_TTL_S = 24 * 3600


def process_requests(
    queue: RequestQueue,
    index: PaperIndex,
    store: ObjectStore,
    instance: dg.DagsterInstance,
    pending: dict[str, dict[str, Any]],
    failures: dict[str, int] | None = None,
    max_messages: int = 10,
    now: float | None = None,
) -> RequestTick:
    """One tick of the requests sensor, as a function of its inputs.

    A message's runs are requested in this tick and the message is deleted in a later one, once
    its run keys belong to runs: only then is the tick that requested them committed. If the daemon
    dies in between, the message comes back and the same run keys make its runs start once.
    A message that cannot be used goes to the dead-letter place with the reason; one message's
    failure never fails the tick for the others.
    """
    now = time.time() if now is None else now
    earlier_failures = dict(failures or {})
    tick = RequestTick()
    # 1. Delete what earlier ticks requested and the instance now has on record.
    for message_id, entry in pending.items():
        keys = entry.get("run_keys", [])
        if keys and existing_run_keys(instance, keys) == set(keys):
            queue.delete(QueueMessage(message_id, "", entry["handle"]))
            tick.deleted.append(message_id)
        elif now - float(entry.get("since", now)) > PENDING_TTL_S:
            tick.log.append(f"message {message_id}: its runs never appeared; looking at it afresh")
        else:
            tick.pending[message_id] = entry
    valid_partitions = set(VENUE_YEAR.get_partition_keys())
    # 2. New messages (or old ones delivered again).
    for message in queue.receive(max_messages):
        if message.message_id in tick.deleted:
            continue
        try:
            _process_message(message, queue, index, store, instance, tick, valid_partitions, now)
        except Exception as exc:  # one message must not fail the tick for the rest
            # SQS counts deliveries itself; the spool delivers every tick, so our count is the one.
            attempts = max(earlier_failures.get(message.message_id, 0), message.receive_count - 1) + 1
            reason = f"processing failed {attempts} time(s): {type(exc).__name__}: {exc}"
            if attempts >= MAX_REQUEST_ATTEMPTS:
                try:
                    tick.dead_letter(queue, message, reason)
                except Exception as dl_exc:
                    tick.log.append(f"message {message.message_id}: {reason}; moving it aside failed too: {dl_exc}")
            else:
                tick.failures[message.message_id] = attempts
                tick.log.append(f"message {message.message_id}: {reason}; will try again")
    return tick


def _process_message(message: QueueMessage, queue: RequestQueue, index: PaperIndex, store: ObjectStore,
                     instance: dg.DagsterInstance, tick: RequestTick, valid_partitions: set[str], now: float) -> None:
    earlier = tick.pending.get(message.message_id)
    if earlier and existing_run_keys(instance, earlier["run_keys"]) == set(earlier["run_keys"]):
        queue.delete(message)
        tick.deleted.append(message.message_id)
        tick.pending.pop(message.message_id, None)
        return
    try:
        request = parse_request(message.body)
    except InvalidRequest as exc:
        tick.dead_letter(queue, message, str(exc))
        return
    resolved = resolve_request(request, index)
    outside = sorted(pk for pk in resolved.by_partition if pk not in valid_partitions)
    for pk in outside:
        # A run request for a partition the graph does not have would fail the whole tick.
        tick.log.append(f"message {message.message_id}: skipping papers of {pk}, not a partition of this pipeline")
        del resolved.by_partition[pk]
    if resolved.error or not resolved.by_partition:
        tick.dead_letter(queue, message, resolved.error or f"the matching papers are outside the pipeline's partitions: {outside}")
        return
    if request.action == "get_paper_info":
        answer_paper_info(store, message.message_id, request, resolved.docs)
        queue.delete(message)
        tick.answered.append(message.message_id)
        tick.log.append(f"message {message.message_id}: paper info for {len(resolved.docs)} paper(s) written to "
                        f"{store.uri(RESULTS_BUCKET, paper_info_key(message.message_id))}")
        return
    run_keys = []
    for pk, paper_ids in sorted(resolved.by_partition.items()):
        key = request_run_key(message.message_id, pk, len(resolved.by_partition))
        run_keys.append(key)
        tick.run_requests.append(
            dg.RunRequest(
                run_key=key,
                partition_key=pk,
                run_config=generate_run_config(paper_ids),
                tags={"annapurna/trigger": "request", "annapurna/message_id": message.message_id,
                      "annapurna/request": request.describe()[:200], "annapurna/paper_ids": ",".join(paper_ids)[:200]},
            )
        )
    since = float((earlier or {}).get("since", now))
    tick.pending[message.message_id] = {"handle": message.receipt_handle, "run_keys": run_keys, "since": since}
    tick.log.append(f"message {message.message_id}: {request.describe()} -> {len(run_keys)} run(s) for "
                    f"{sum(len(v) for v in resolved.by_partition.values())} paper(s)")


def paper_info_key(message_id: str) -> str:
    return f"requests/{re.sub(r'[^A-Za-z0-9._-]', '_', message_id)}/paper_info.json"


def answer_paper_info(store: ObjectStore, message_id: str, request: GenerateRequest, docs: list[PaperDoc]) -> None:
    """The earlier design answered get_paper_info synchronously; through a queue the answer is an object."""
    fields = ("paper_id", "venue", "year", "title", "authors", "abstract", "url", "status", "judge_status",
              "accepted", "score", "code_status", "code_key", "test_status")
    body = {"message_id": message_id, "request": json.loads(request.to_body()),
            "answered_at": datetime.now(UTC).isoformat(),
            "papers": [{k: d.get(k) for k in fields if k in d} for d in docs]}
    store.put(RESULTS_BUCKET, paper_info_key(message_id), json.dumps(body, indent=1, default=str).encode("utf-8"),
              "application/json")


@dg.sensor(
    name="requests_sensor",
    job=generate_code_job,
    minimum_interval_seconds=REQUESTS_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Generate requests from the request queue (SQS code-evaluation.fifo, or the local spool) -> generated_code runs.",
)
def requests_sensor(context: dg.SensorEvaluationContext, queue: RequestQueue, index: PaperIndex,
                    store: ObjectStore) -> dg.SensorResult:
    state = json.loads(context.cursor) if context.cursor else {}
    tick = process_requests(queue, index, store, context.instance, state.get("pending", {}), state.get("failures", {}))
    for line in tick.log:
        context.log.info(line)
    cursor = {"pending": tick.pending, "failures": tick.failures}
    return dg.SensorResult(run_requests=tick.run_requests, cursor=json.dumps(cursor, sort_keys=True))


# ------------------------------------------------------------------ test batches


@dataclass(frozen=True)
class WaitingProgram:
    paper_id: str
    partition: str
    sha256: str
    since: datetime


def waiting_programs(index: PaperIndex, store: ObjectStore, limit: int = 5000) -> list[WaitingProgram]:
    """Valid programs whose current version has not run yet, with when that version was stored."""
    out = []
    for doc in index.by_status("code_status", "generated", limit=limit):
        sha = doc.get("code_sha256") or ""
        tested = str((doc.get("test") or {}).get("run_key", ""))
        if not sha or tested.startswith(f"{sha}|"):
            continue
        since = None
        key = doc.get("code_key")
        if key:
            for obj in store.list_objects(CODE_BUCKET, key):
                if obj.key == key:
                    since = obj.last_modified
                    break
        out.append(WaitingProgram(doc["paper_id"], f"{doc['venue']}|{doc['year']}", sha,
                                  since or datetime.now(UTC)))
    return out


def batch_due(waiting: Sequence[WaitingProgram], now: datetime, batch_size: int, max_wait_s: int) -> str | None:
    """Why a batch should start now, or None: enough programs, or the oldest has waited long enough."""
    if not waiting:
        return None
    if len(waiting) >= batch_size:
        return f"{len(waiting)} programs wait (batch size {batch_size})"
    oldest = min(w.since for w in waiting)
    waited = (now - oldest).total_seconds()
    if waited >= max_wait_s:
        return f"the oldest of {len(waiting)} programs has waited {waited / 60:.0f} min (limit {max_wait_s / 60:.0f})"
    return None


def test_batch_run_requests(waiting: Sequence[WaitingProgram], now: datetime, max_wait_s: int,
                            skip: Iterable[str] = ()) -> list[dg.RunRequest]:
    """One test_results run per partition with waiting programs. The run key names the programs and
    the wait window, so a batch that failed is tried again once per window, never in a loop."""
    skipped = set(skip)
    by_partition: dict[str, list[WaitingProgram]] = {}
    for w in waiting:
        if w.partition not in skipped:
            by_partition.setdefault(w.partition, []).append(w)
    window = int(now.timestamp()) // max(1, max_wait_s)
    return [
        dg.RunRequest(
            run_key=f"test-batch:{pk}:{short_hash(w.sha256 for w in ws)}:{window}",
            partition_key=pk,
            tags={"annapurna/trigger": "test_batch", "annapurna/programs": str(len(ws))},
        )
        for pk, ws in sorted(by_partition.items())
    ]


def build_test_batch_sensor(batch_size: int = TEST_BATCH_SIZE, max_wait_s: int = TEST_BATCH_MAX_WAIT_S,
                            interval_s: int = TEST_BATCH_INTERVAL_S) -> dg.SensorDefinition:
    @dg.sensor(
        name="test_batch_sensor",
        job=test_batch_job,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"A test_results run when {batch_size} programs wait untested or the oldest waited "
                    f"{max_wait_s // 60} min.",
    )
    def test_batch_sensor(context: dg.SensorEvaluationContext, index: PaperIndex, store: ObjectStore) -> dg.SensorResult:
        # A run request for a partition the graph does not have would fail the whole tick.
        valid = set(VENUE_YEAR.get_partition_keys())
        waiting = [w for w in waiting_programs(index, store) if w.partition in valid]
        now = datetime.now(UTC)
        reason = batch_due(waiting, now, batch_size, max_wait_s)
        if reason is None:
            return dg.SensorResult(skip_reason=f"{len(waiting)} program(s) waiting; no batch due yet")
        busy = busy_partitions(context.instance, sorted({w.partition for w in waiting}))
        requests = test_batch_run_requests(waiting, now, max_wait_s, skip=busy)
        context.log.info(f"test batch due: {reason}; {len(requests)} run(s); waiting on busy partitions: {sorted(busy)}")
        return dg.SensorResult(run_requests=requests)

    return test_batch_sensor


test_batch_sensor = build_test_batch_sensor()

SENSORS = [new_papers_sensor, requests_sensor, test_batch_sensor, automation_sensor]
JOBS = [ingest_and_judge_job, generate_code_job, test_batch_job]
