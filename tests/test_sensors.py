"""Sensors and the schedule, evaluated with build_sensor_context against the local backends and
against moto's S3 and SQS servers on 127.0.0.1 (real boto3)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from dagster_aws.s3 import S3Resource

from annapurna_assets import sensors
from annapurna_assets.schedules import arxiv_partitions_for, daily_arxiv_schedule
from annapurna_resources.index import PaperIndex
from annapurna_resources.index.sqlite import SqliteIndex
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.object_store.local import LocalObjectStore
from annapurna_resources.object_store.s3 import S3ObjectStore
from annapurna_resources.queue import RequestQueue
from annapurna_resources.queue.spool import SpoolRequestQueue
from annapurna_resources.queue.sqs import SqsRequestQueue
from annapurna_resources.settings import CODE_BUCKET, RAW_PAPERS_BUCKET, RESULTS_BUCKET
from tests.local_moto import moto_server

PDF = b"%PDF-1.4\n% a paper\n"


def doc(paper_id: str, venue: str, year: int, **extra: object) -> dict:
    return {"paper_id": paper_id, "venue": venue, "year": year, "title": f"Title of {paper_id}",
            "authors": ["Ada Lovelace"], "abstract": "We study sparse attention.", "published": f"{year}-05-01",
            "status": "ok", **extra}


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def index(tmp_path: Path) -> PaperIndex:
    return SqliteIndex(path=str(tmp_path / "index.db"))


@pytest.fixture
def local_store(tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(root=str(tmp_path / "objects"))


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server(monkeypatch) as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(root=str(tmp_path / "objects"))
    endpoint = request.getfixturevalue("moto_endpoint")
    return S3ObjectStore(s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"), create_buckets=True)


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None, **resources: object):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, sensor_name=sensor.name) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def commit(instance: dg.DagsterInstance, requests: list[dg.RunRequest], job_name: str,
           status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS) -> None:
    """What the daemon does with a tick's run requests: a run per request, tagged with its key."""
    for r in requests:
        tags = {**r.tags, "dagster/run_key": r.run_key or "", "dagster/partition": r.partition_key or ""}
        create_run_for_test(instance, job_name=job_name, tags=tags, status=status)


# ------------------------------------------------------------------ new papers


def test_paper_of_key_accepts_only_papers_directly_in_a_partition_folder() -> None:
    assert sensors.paper_of_key("papers/iclr/2025/abc-1.pdf") == ("iclr|2025", "abc-1")
    assert sensors.paper_of_key("papers/arxiv/2024/2401.01234v2.json") == ("arxiv|2024", "2401.01234v2")
    for key in ("papers/iclr/2025/abc.txt", "papers/iclr/2025/.tmp-x.pdf", "papers/iclr/2025/sub/abc.pdf",
                "papers/iclr/25/abc.pdf", "other/iclr/2025/abc.pdf", "papers/iclr/2025/a b.pdf"):
        assert sensors.paper_of_key(key) is None, key


def test_new_papers_sensor_finds_drops_and_ignores_the_pipelines_own_files(
    store: ObjectStore, index: PaperIndex, instance: dg.DagsterInstance
) -> None:
    # A paper the pipeline ingested: files and an index entry.
    index.upsert([doc("known1", "iclr", 2025, pdf_key="papers/iclr/2025/known1.pdf")])
    for ext in ("pdf", "json", "txt"):
        store.put(RAW_PAPERS_BUCKET, f"papers/iclr/2025/known1.{ext}", PDF)
    # A person's upload, no metadata beside it.
    store.put(RAW_PAPERS_BUCKET, "papers/arxiv/2024/zeta.pdf", PDF)

    first = tick(sensors.new_papers_sensor, instance, None, store=store, index=index)
    assert [(r.partition_key, r.job_name or "ingest_and_judge") for r in first.run_requests] == [("arxiv|2024", "ingest_and_judge")]
    assert first.run_requests[0].run_key.startswith("new-papers:arxiv|2024:")
    assert first.run_requests[0].run_config == {"ops": {"papers": {"config": {"incremental": True}}}}
    cursor = json.loads(first.cursor)
    assert cursor["after"]["papers/arxiv/2024/"] == "papers/arxiv/2024/zeta.pdf"
    assert cursor["after"]["papers/iclr/2025/"] == "papers/iclr/2025/known1.txt"

    # Until the pipeline has ingested it, the same file gives the same run key: the daemon skips it.
    again = tick(sensors.new_papers_sensor, instance, first.cursor, store=store, index=index)
    assert {r.run_key for r in again.run_requests} <= {first.run_requests[0].run_key}

    # Once ingested (indexed), it is no longer new.
    index.upsert([doc("zeta", "arxiv", 2024, source="upload")])
    quiet = tick(sensors.new_papers_sensor, instance, first.cursor, store=store, index=index)
    assert quiet.run_requests == []


def test_a_key_that_sorts_before_the_cursor_is_found_by_the_sweep(
    local_store: ObjectStore, index: PaperIndex, instance: dg.DagsterInstance
) -> None:
    local_store.put(RAW_PAPERS_BUCKET, "papers/arxiv/2024/zeta.pdf", PDF)
    result = tick(sensors.new_papers_sensor, instance, None, store=local_store, index=index)
    index.upsert([doc("zeta", "arxiv", 2024)])
    cursor = result.cursor
    # alpha sorts before zeta: the fast pass (start_after=zeta) cannot see it.
    local_store.put(RAW_PAPERS_BUCKET, "papers/arxiv/2024/alpha.pdf", PDF)
    prefixes = sensors.raw_prefixes(sensors.VENUE_YEAR.get_partition_keys())
    found = []
    for _ in range(len(prefixes) // sensors.SWEEP_PREFIXES_PER_TICK + 2):
        result = tick(sensors.new_papers_sensor, instance, cursor, store=local_store, index=index)
        cursor = result.cursor
        found += [r.partition_key for r in result.run_requests]
        if found:
            break
    assert found == ["arxiv|2024"]


def test_scan_lists_prefixes_not_the_bucket(local_store: ObjectStore, index: PaperIndex) -> None:
    calls: list[tuple[str, str | None]] = []

    class Recording(LocalObjectStore):
        def list_objects(self, bucket: str, prefix: str = "", start_after: str | None = None):  # type: ignore[override]
            calls.append((prefix, start_after))
            return super().list_objects(bucket, prefix, start_after)

    store = Recording(root=local_store.root)  # type: ignore[attr-defined]
    store.put(RAW_PAPERS_BUCKET, "papers/icml/2023/p.pdf", PDF)
    prefixes = ["papers/iclr/2025/", "papers/icml/2023/"]
    scan = sensors.scan_raw_papers(store, index, prefixes, {}, sweep_per_tick=1)
    assert scan.unknown == {"icml|2023": ["papers/icml/2023/p.pdf"]}
    assert all(prefix in prefixes for prefix, _ in calls)  # never "" (the whole bucket)
    calls.clear()
    sensors.scan_raw_papers(store, index, prefixes, scan.cursor, sweep_per_tick=0)
    assert ("papers/icml/2023/", "papers/icml/2023/p.pdf") in calls


def test_a_partition_being_written_is_held_until_its_run_ends(
    local_store: ObjectStore, index: PaperIndex, instance: dg.DagsterInstance
) -> None:
    local_store.put(RAW_PAPERS_BUCKET, "papers/neurips/2024/a.pdf", PDF)
    first = tick(sensors.new_papers_sensor, instance, None, store=local_store, index=index)
    assert [r.partition_key for r in first.run_requests] == ["neurips|2024"]
    # A run for the partition starts (as the daemon would) and, while it runs, a second file lands.
    create_run_for_test(instance, job_name="ingest_and_judge", status=dg.DagsterRunStatus.STARTED,
                        tags={"dagster/partition": "neurips|2024"})
    local_store.put(RAW_PAPERS_BUCKET, "papers/neurips/2024/b.pdf", PDF)
    held = tick(sensors.new_papers_sensor, instance, first.cursor, store=local_store, index=index)
    assert held.run_requests == []
    assert json.loads(held.cursor)["after"]["papers/neurips/2024/"] == "papers/neurips/2024/a.pdf"
    # The run ends having ingested a.pdf only; b.pdf now gets a run of its own.
    for record in instance.get_run_records():
        instance.handle_run_event(record.dagster_run.run_id, dg.DagsterEvent(
            event_type_value="PIPELINE_SUCCESS", job_name="ingest_and_judge", message="done"))
    index.upsert([doc("a", "neurips", 2024)])
    after = tick(sensors.new_papers_sensor, instance, held.cursor, store=local_store, index=index)
    assert [r.partition_key for r in after.run_requests] == ["neurips|2024"]
    assert after.run_requests[0].run_key != first.run_requests[0].run_key


# ------------------------------------------------------------------ requests


@pytest.fixture(params=["spool", "sqs"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> RequestQueue:
    if request.param == "spool":
        return SpoolRequestQueue(root=str(tmp_path / "spool"))
    endpoint = request.getfixturevalue("moto_endpoint")
    q = SqsRequestQueue(region_name="us-east-1", endpoint_url=endpoint, visibility_timeout_s=2)
    q.ensure_queues()
    return q


def _queue_depth(queue: RequestQueue) -> int:
    if isinstance(queue, SpoolRequestQueue):
        return len(queue.receive(100))
    attrs = queue.client().get_queue_attributes(
        QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def _dead_letters(queue: RequestQueue) -> list[str]:
    if isinstance(queue, SpoolRequestQueue):
        return [r["reason"] for r in queue.dead_letters()]
    sqs = queue.client()
    url = sqs.get_queue_url(QueueName=queue.dead_letter_queue_name)["QueueUrl"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", [])
    return [m["MessageAttributes"]["dead_letter_reason"]["StringValue"] for m in got]


def test_requests_sensor_runs_requests_and_deletes_only_after_commit(
    queue: RequestQueue, index: PaperIndex, local_store: ObjectStore, instance: dg.DagsterInstance
) -> None:
    index.upsert([doc("attn", "neurips", 2017, title="Attention Is All You Need"),
                  doc("resnet", "iclr", 2016, title="Deep Residual Learning")])
    queue.send("{not json")                       # malformed, first in line
    wanted = queue.send(json.dumps({"action": "generate_by_title", "title": "Attention Is All You Need", "max_papers": 1}))
    queue.send(json.dumps({"action": "generate_by_title", "title": "No Such Paper Anywhere"}))
    info = queue.send(json.dumps({"action": "get_paper_info", "paper_id": "resnet"}))

    first = tick(sensors.requests_sensor, instance, None, queue=queue, index=index, store=local_store)
    # The malformed message did not block the ones behind it.
    assert [(r.run_key, r.partition_key) for r in first.run_requests] == [(wanted, "neurips|2017")]
    assert first.run_requests[0].tags["annapurna/paper_ids"] == "attn"
    reasons = _dead_letters(queue)
    assert len(reasons) == 2
    assert any("not JSON" in r for r in reasons) and any("no paper in the index matches" in r for r in reasons)
    answer = json.loads(local_store.get(RESULTS_BUCKET, sensors.paper_info_key(info)))
    assert [p["paper_id"] for p in answer["papers"]] == ["resnet"]
    # Requested but not yet committed: the message is still there.
    assert json.loads(first.cursor)["pending"][wanted]["run_keys"] == [wanted]
    assert _queue_depth(queue) == 1

    if isinstance(queue, SqsRequestQueue):
        time.sleep(2.5)  # let the visibility timeout pass, so the message is delivered again
    # The tick's runs were never created (the daemon died): the same run key is requested again.
    retry = tick(sensors.requests_sensor, instance, first.cursor, queue=queue, index=index, store=local_store)
    assert [r.run_key for r in retry.run_requests] == [wanted]
    assert _queue_depth(queue) == 1

    # The daemon commits the runs; the next tick deletes the message.
    commit(instance, retry.run_requests, "generate_code")
    done = tick(sensors.requests_sensor, instance, retry.cursor, queue=queue, index=index, store=local_store)
    assert done.run_requests == []
    assert json.loads(done.cursor)["pending"] == {}
    assert _queue_depth(queue) == 0


def test_request_spanning_partitions_gets_a_run_per_partition(
    index: PaperIndex, local_store: ObjectStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    index.upsert([doc("p1", "iclr", 2024, authors=["Grace Hopper"]), doc("p2", "icml", 2023, authors=["Grace Hopper"]),
                  doc("p3", "icml", 2023, authors=["Grace Hopper"])])
    queue = SpoolRequestQueue(root=str(tmp_path / "spool"))
    mid = queue.send(json.dumps({"action": "generate_by_author", "author": "Grace Hopper", "max_papers": 5}))
    first = tick(sensors.requests_sensor, instance, None, queue=queue, index=index, store=local_store)
    got = {r.partition_key: (r.run_key, r.tags["annapurna/paper_ids"]) for r in first.run_requests}
    assert got == {"iclr|2024": (f"{mid}:iclr|2024", "p1"), "icml|2023": (f"{mid}:icml|2023", "p2,p3")}
    # Only when every one of its runs exists is the message deleted.
    commit(instance, first.run_requests[:1], "generate_code")
    half = tick(sensors.requests_sensor, instance, first.cursor, queue=queue, index=index, store=local_store)
    assert len(queue.receive()) == 1
    commit(instance, half.run_requests[1:] or first.run_requests[1:], "generate_code")
    tick(sensors.requests_sensor, instance, half.cursor, queue=queue, index=index, store=local_store)
    assert queue.receive() == []


def test_a_message_that_breaks_processing_does_not_block_and_is_moved_aside_in_the_end(
    index: PaperIndex, local_store: ObjectStore, instance: dg.DagsterInstance, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    index.upsert([doc("good", "iclr", 2024, title="A Good Paper"), doc("cursed", "iclr", 2024, title="A Cursed Paper")])
    queue = SpoolRequestQueue(root=str(tmp_path / "spool"))
    bad = queue.send(json.dumps({"action": "generate_by_title", "title": "A Cursed Paper"}))
    good = queue.send(json.dumps({"action": "generate_by_title", "title": "A Good Paper"}))
    real = sensors.resolve_request

    def flaky(request, idx):  # noqa: ANN001, ANN202 - the signature of resolve_request
        if request.title == "A Cursed Paper":
            raise ConnectionError("index timed out")
        return real(request, idx)

    monkeypatch.setattr(sensors, "resolve_request", flaky)
    cursor = None
    for attempt in range(1, sensors.MAX_REQUEST_ATTEMPTS + 1):
        result = tick(sensors.requests_sensor, instance, cursor, queue=queue, index=index, store=local_store)
        cursor = result.cursor
        # The good message behind it is requested every tick until its run exists.
        assert [r.run_key for r in result.run_requests] == [good]
        state = json.loads(cursor)
        if attempt < sensors.MAX_REQUEST_ATTEMPTS:
            assert state["failures"] == {bad: attempt}
            assert bad in [m.message_id for m in queue.receive()]
    assert state["failures"] == {}
    assert [m.message_id for m in queue.receive()] == [good]
    assert "ConnectionError: index timed out" in queue.dead_letters()[0]["reason"]


def test_papers_outside_the_partitions_are_refused_not_requested(
    index: PaperIndex, local_store: ObjectStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    index.upsert([doc("old", "iclr", 2009, title="A Paper From Before The Partitions")])
    queue = SpoolRequestQueue(root=str(tmp_path / "spool"))
    queue.send(json.dumps({"action": "generate_by_id", "paper_id": "old"}))
    result = tick(sensors.requests_sensor, instance, None, queue=queue, index=index, store=local_store)
    # A run request for iclr|2009 would fail the daemon's whole tick.
    assert result.run_requests == []
    assert "outside the pipeline's partitions" in queue.dead_letters()[0]["reason"]


def test_pending_requests_whose_runs_never_appear_are_forgotten_after_a_day(
    index: PaperIndex, local_store: ObjectStore, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    queue = SpoolRequestQueue(root=str(tmp_path / "spool"))
    pending = {"gone": {"handle": "x.json", "run_keys": ["gone"], "since": 1000.0},
               "fresh": {"handle": "y.json", "run_keys": ["fresh"], "since": 1000.0 + sensors.PENDING_TTL_S}}
    result = sensors.process_requests(queue, index, local_store, instance, pending,
                                      now=1000.0 + sensors.PENDING_TTL_S + 1)
    assert set(result.pending) == {"fresh"}


def test_resolve_request_follows_duplicates_to_the_canonical_paper(index: PaperIndex) -> None:
    from annapurna_resources.queue import parse_request

    index.upsert([doc("2401.1", "arxiv", 2024, status="duplicate", duplicate_of="venue1"),
                  doc("venue1", "iclr", 2025)])
    resolved = sensors.resolve_request(parse_request('{"action": "generate_by_id", "paper_id": "2401.1"}'), index)
    assert resolved.by_partition == {"iclr|2025": ["venue1"]}


# ------------------------------------------------------------------ test batches


def _program(store: ObjectStore, index: PaperIndex, pid: str, venue: str, year: int, tested: bool = False,
             age_s: float = 0) -> None:
    key = f"programs/{venue}/{year}/{pid}/gen/v1.py"
    store.put(CODE_BUCKET, key, f"print('{pid}')".encode())
    if age_s and isinstance(store, LocalObjectStore):
        past = time.time() - age_s
        os.utime(store.uri(CODE_BUCKET, key), (past, past))
    sha = f"{pid:0>64}"[:64]
    extra: dict[str, object] = {"code_status": "generated", "code_key": key, "code_sha256": sha}
    if tested:
        extra.update(test_status="passed", test={"run_key": f"{sha}|cpu"})
    index.upsert([doc(pid, venue, year, **extra)])


def test_batch_due_by_count_or_by_age() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    w = [sensors.WaitingProgram(f"p{i}", "iclr|2025", "s", now - timedelta(minutes=5)) for i in range(3)]
    assert sensors.batch_due(w, now, batch_size=10, max_wait_s=3600) is None
    assert "3 programs wait" in (sensors.batch_due(w, now, batch_size=3, max_wait_s=3600) or "")
    old = [*w, sensors.WaitingProgram("old", "icml|2024", "s", now - timedelta(minutes=61))]
    assert "waited 61 min" in (sensors.batch_due(old, now, batch_size=10, max_wait_s=3600) or "")
    assert sensors.batch_due([], now, batch_size=1, max_wait_s=0) is None


def test_test_batch_sensor_waits_then_requests_a_run_per_partition(
    local_store: ObjectStore, index: PaperIndex, instance: dg.DagsterInstance
) -> None:
    _program(local_store, index, "a", "iclr", 2025)
    _program(local_store, index, "b", "iclr", 2025)
    _program(local_store, index, "c", "icml", 2024, tested=True)
    sensor = sensors.build_test_batch_sensor(batch_size=3, max_wait_s=3600)
    quiet = tick(sensor, instance, None, store=local_store, index=index)
    assert quiet.run_requests == [] and "2 program(s) waiting" in (quiet.skip_reason.skip_message or "")
    _program(local_store, index, "d", "icml", 2024)
    due = tick(sensor, instance, None, store=local_store, index=index)
    assert sorted(r.partition_key for r in due.run_requests) == ["iclr|2025", "icml|2024"]
    assert all(r.run_key.startswith("test-batch:") for r in due.run_requests)
    # A partition whose programs are being written waits for that run.
    create_run_for_test(instance, job_name="generate_code", status=dg.DagsterRunStatus.STARTED,
                        tags={"dagster/partition": "iclr|2025"})
    held = tick(sensor, instance, None, store=local_store, index=index)
    assert [r.partition_key for r in held.run_requests] == ["icml|2024"]


def test_an_old_program_starts_a_batch_alone(local_store: ObjectStore, index: PaperIndex,
                                              instance: dg.DagsterInstance) -> None:
    _program(local_store, index, "lonely", "mlsys", 2024, age_s=2 * 3600)
    sensor = sensors.build_test_batch_sensor(batch_size=10, max_wait_s=3600)
    result = tick(sensor, instance, None, store=local_store, index=index)
    assert [r.partition_key for r in result.run_requests] == ["mlsys|2024"]


def test_a_retested_program_stops_waiting(local_store: ObjectStore, index: PaperIndex) -> None:
    _program(local_store, index, "x", "iclr", 2025, tested=True)
    assert sensors.waiting_programs(index, local_store) == []
    # A new version of the program (new sha) waits again.
    index.upsert([{"paper_id": "x", "code_sha256": "f" * 64}])
    assert [w.paper_id for w in sensors.waiting_programs(index, local_store)] == ["x"]


# ------------------------------------------------------------------ schedule and automation


def test_daily_arxiv_schedule() -> None:
    assert arxiv_partitions_for(datetime(2025, 6, 1, tzinfo=UTC)) == ["arxiv|2025"]
    assert arxiv_partitions_for(datetime(2025, 1, 2, tzinfo=UTC)) == ["arxiv|2025", "arxiv|2024"]
    now = datetime.now(UTC)
    context = dg.build_schedule_context(scheduled_execution_time=now)
    requests = daily_arxiv_schedule(context)
    assert [r.partition_key for r in requests][0] == f"arxiv|{now.year}"
    assert requests[0].run_key == f"arxiv-daily:arxiv|{now.year}:{now:%Y-%m-%d}"
    assert requests[0].run_config == {"ops": {"papers": {"config": {"incremental": True}}}}


@dg.asset
def chatty() -> int:
    print("a line of step output")
    return 1


def test_log_cleanup_deletes_old_step_logs_and_keeps_recent_ones(instance: dg.DagsterInstance) -> None:
    from annapurna_assets.schedules import log_cleanup

    run = dg.materialize([chatty], instance=instance)
    base = Path(instance.compute_log_manager._base_dir)  # type: ignore[attr-defined]
    logs = base / run.run_id / "compute_logs"
    assert any(p.suffix == ".out" for p in logs.iterdir())

    kept = log_cleanup.execute_in_process(
        instance=instance, run_config={"ops": {"purge_old_compute_logs": {"config": {"keep_days": 30}}}})
    assert kept.output_for_node("purge_old_compute_logs") == 0
    assert logs.is_dir()

    purged = log_cleanup.execute_in_process(
        instance=instance, run_config={"ops": {"purge_old_compute_logs": {"config": {"keep_days": 0}}}})
    assert purged.output_for_node("purge_old_compute_logs") >= 1
    assert not (base / run.run_id).exists()
    # The run and its events stay: only the bulky step output went.
    assert instance.get_run_by_id(run.run_id) is not None
    assert instance.get_latest_materialization_event(dg.AssetKey("chatty")) is not None


def test_with_automation_makes_judgments_and_programs_follow_upstream() -> None:
    from annapurna_assets.definitions import PIPELINE_ASSETS

    conditions = {
        a.key.to_user_string(): a.specs_by_key[a.key].automation_condition
        for a in sensors.with_automation(PIPELINE_ASSETS)
    }
    assert conditions["papers"] is None
    assert conditions["test_results"] is None
    assert conditions["judgments"] is not None and conditions["generated_code"] is not None
    assert "eager" in (conditions["judgments"].get_label() or conditions["judgments"].name or "").lower()


def test_automation_follows_papers_with_judgments_and_programs_and_then_rests(tmp_path: Path) -> None:
    """What the automation sensor decides, partition by partition, on the real assets."""
    from annapurna_assets.definitions import PIPELINE_ASSETS
    from tests.pipeline_helpers import make_resources

    assets = sensors.with_automation(PIPELINE_ASSETS)
    by_key = {a.key.to_user_string(): a for a in assets}
    resources = make_resources(tmp_path)
    defs = dg.Definitions(assets=assets, resources=resources)
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing upstream yet: nothing to follow
        assert dg.materialize([by_key["papers"]], partition_key="iclr|2015", resources=resources,
                              instance=instance).success
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        # Judgments follow the new papers, and programs follow in the same run.
        assert second.get_requested_partitions(dg.AssetKey("judgments")) == {"iclr|2015"}
        assert second.get_requested_partitions(dg.AssetKey("generated_code")) == {"iclr|2015"}
        assert second.get_num_requested(dg.AssetKey("test_results")) == 0  # batches: the sensor's job
        assert dg.materialize([by_key["papers"], by_key["judgments"], by_key["generated_code"]],
                              partition_key="iclr|2015", resources=resources, instance=instance,
                              selection=[by_key["judgments"], by_key["generated_code"]]).success
        third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        assert third.total_requested == 0  # caught up: no loop


def test_local_profile_runs_everything_by_default_on_a_valid_instance(tmp_path: Path) -> None:
    """`make ui` alone keeps the pipeline moving: every sensor and the schedule start RUNNING, on the
    repository's dagster.yaml (pools, retries, run monitoring, telemetry off, retention)."""
    import shutil

    from dagster._core.instance.config import dagster_instance_config

    from annapurna_assets.definitions import defs

    repo = defs.get_repository_def()
    assert {s.name: s.default_status for s in repo.sensor_defs} == {
        "new_papers_sensor": dg.DefaultSensorStatus.RUNNING,
        "requests_sensor": dg.DefaultSensorStatus.RUNNING,
        "test_batch_sensor": dg.DefaultSensorStatus.RUNNING,
        "annapurna_automation": dg.DefaultSensorStatus.RUNNING,
    }
    assert sorted((s.name, s.default_status) for s in repo.schedule_defs) == [
        ("daily_arxiv_schedule", dg.DefaultScheduleStatus.RUNNING),
        ("log_cleanup_schedule", dg.DefaultScheduleStatus.RUNNING)]
    assert "queue" in repo.get_top_level_resources()

    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["telemetry"]["enabled"] is False
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    assert config["run_retries"]["enabled"] and config["run_monitoring"]["enabled"]
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] > 0
    # The pools the assets name are the ones the instance limits.
    pools = {spec.pool for a in sensors.with_automation(_pipeline_assets()) for spec in [a.get_op_def_for_asset_key(a.key)]}
    assert {"llm", "trainium"} <= pools


def _pipeline_assets() -> list[dg.AssetsDefinition]:
    from annapurna_assets.definitions import PIPELINE_ASSETS

    return PIPELINE_ASSETS


def test_the_run_config_each_trigger_sends_is_valid_for_its_job() -> None:
    """A config the job does not accept would fail every run the sensor starts."""
    from annapurna_assets.definitions import defs
    from annapurna_assets.schedules import arxiv_papers_job

    checks = [
        (sensors.ingest_and_judge_job.name, sensors.INGEST_RUN_CONFIG),
        (sensors.generate_code_job.name, sensors.generate_run_config(["p1", "p2"])),
        (arxiv_papers_job.name, {"ops": {"papers": {"config": {"incremental": True}}}}),
    ]
    for job_name, run_config in checks:
        dg.validate_run_config(defs.resolve_job_def(job_name), run_config)
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(defs.resolve_job_def("generate_code"),
                               {"ops": {"generated_code": {"config": {"no_such_field": 1}}}})
