"""`dagster dev` for real: webserver and daemon on a temporary DAGSTER_HOME and ANNAPURNA_HOME.

1. A backfill of two demo partitions (papers + judgments) launched through the GraphQL API
   materializes both.
2. A PDF dropped into the raw-papers store, without metadata, is noticed by the new-papers sensor,
   which starts an ingest-and-judge run for its partition; the paper comes out indexed and judged
   with the title read from its own text.
3. `annapurna request generate --title ...` for that paper: the requests sensor starts a
   generate_code run, a program is stored, and the message is deleted after the run is on record.

Everything runs in its own process group, which is always killed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).parent / "dagster"
BACKFILL_PARTITIONS = ["iclr|2015", "icml|2015"]
DROP_PARTITION = ("mlsys", 2020)
# Limits of each wait on a busy 2-core machine (typically: 20-40 s start-up, 2 min for the backfill
# and the dropped PDF together, 1 min for the request).
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 300

# Above the suite-wide 600 s, so the waits above end first, with a message and the server's log.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, interval_s: float = 1.0,
             on_timeout: Callable[[], str] = lambda: "") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{on_timeout()}")
        time.sleep(interval_s)


@dataclass
class DagsterDev:
    url: str
    home: Path
    dagster_home: Path
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[DagsterDev]:
    if not DAGSTER.exists():
        pytest.skip(f"{DAGSTER} not found")
    home = tmp_path / "annapurna"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANNAPURNA_", "DAGSTER_", "AWS_"))},
        "ANNAPURNA_HOME": str(home),
        "ANNAPURNA_PROFILE": "local",
        "ANNAPURNA_SOURCES": "demo",
        "DAGSTER_HOME": str(dagster_home),
        # Short ticks and a full sweep per tick, so the test waits seconds, not minutes.
        "ANNAPURNA_NEW_PAPERS_INTERVAL_S": "5",
        "ANNAPURNA_SWEEP_PREFIXES_PER_TICK": "1000",
        "ANNAPURNA_REQUESTS_INTERVAL_S": "5",
        # Declarative automation would follow the backfill with generated_code runs that only
        # compete for the CPU here; tests/test_sensors.py covers it.
        "ANNAPURNA_AUTOMATION_INTERVAL_S": "3600",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "dagster-dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: webserver, daemon, code server, runs
        )
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", home=home, dagster_home=dagster_home, log=log)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"dagster dev exited with {proc.returncode}\n{dev.tail()}")
            try:
                data = dev.graphql("{ workspaceOrError { __typename ... on Workspace { locationEntries { "
                                   "locationOrLoadError { __typename } } } } }")
            except (httpx.HTTPError, AssertionError):
                return False
            entries = data["workspaceOrError"].get("locationEntries") or []
            types = [e["locationOrLoadError"]["__typename"] for e in entries if e["locationOrLoadError"]]
            assert "PythonError" not in types, dev.tail()
            return types == ["RepositoryLocation"]

        started = time.monotonic()
        wait_for("dagster dev to serve the code location", ready, STARTUP_TIMEOUT_S, on_timeout=dev.tail)
        print(f"dagster dev ready in {time.monotonic() - started:.0f}s")
        yield dev
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    # Run workers and the code server may outlive their parent: take the whole group down.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
  }
}"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } } }
  }
}"""

MATERIALIZED = """
query Materialized($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { partitionStats { numMaterialized } }
  }
}"""


def _runs(dev: DagsterDev, tags: dict[str, str]) -> list[dict[str, Any]]:
    data = dev.graphql(RUNS, {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}})
    return data["runsOrError"]["results"]


def _all_runs(dev: DagsterDev) -> str:
    data = dev.graphql(RUNS, {"filter": {}})
    return json.dumps([(r["jobName"], r["status"], {t["key"]: t["value"] for t in r["tags"]
                                                     if t["key"] in ("dagster/partition", "annapurna/trigger")})
                       for r in data["runsOrError"]["results"]], indent=1)


def _drop_pdf(dev: DagsterDev, venue: str, year: int, paper_id: str, title: str) -> None:
    """What a person does: put a PDF (no metadata beside it) into a partition's raw-papers folder."""
    from annapurna_resources.sources import SourcePaper
    from annapurna_resources.sources.demo import render_paper_pdf

    pdf = render_paper_pdf(SourcePaper(
        paper_id=paper_id, venue=venue, year=year, title=title, authors=["A. Person"],
        abstract="We route tokens to experts with a learned sparse gate and train a small language model "
                 "on WikiText-2, reporting perplexity against a dense baseline.", source="upload"))
    folder = dev.home / "objects" / "llm-research-papers" / "papers" / venue / str(year)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".tmp-upload"
    tmp.write_bytes(pdf)
    tmp.rename(folder / f"{paper_id}.pdf")


def _finished_run(dev: DagsterDev, tags: dict[str, str]) -> dict[str, Any] | None:
    finished = [r for r in _runs(dev, tags) if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
    return finished[0] if finished else None


def test_backfill_then_a_dropped_pdf_and_a_request_need_no_clicks(dagster_dev: DagsterDev) -> None:
    from annapurna_resources.index.sqlite import SqliteIndex

    dev = dagster_dev
    index = SqliteIndex(path=str(dev.home / "index.db"))
    started = time.monotonic()
    launched = dev.graphql(LAUNCH_BACKFILL, {"params": {
        "partitionNames": BACKFILL_PARTITIONS,
        "assetSelection": [{"path": ["papers"]}, {"path": ["judgments"]}],
        "title": "integration test",
    }})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    # While the backfill runs, a person drops a paper into another partition (both go on at once).
    venue, year = DROP_PARTITION
    partition = f"{venue}|{year}"
    title = "Sparse Mixture Routing for Tiny Language Models"
    _drop_pdf(dev, venue, year, "dropped-paper", title)

    def materialized() -> bool:
        # Not the backfill's own status: the backfill daemon updates it only every 30 s.
        for asset in ("papers", "judgments"):
            stats = dev.graphql(MATERIALIZED, {"key": {"path": [asset]}})["assetNodeOrError"]["partitionStats"]
            if (stats or {}).get("numMaterialized", 0) < len(BACKFILL_PARTITIONS):
                return False
        return True

    def no_failed_runs() -> None:
        failed = [r for r in _runs(dev, {"dagster/backfill": backfill_id}) if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, (failed, dev.tail())

    # 1. The backfill's two partitions materialize.
    wait_for("the backfill's partitions to materialize", lambda: no_failed_runs() or materialized(), RUN_TIMEOUT_S,
             interval_s=2, on_timeout=lambda: _all_runs(dev) + "\n" + dev.tail())
    print(f"backfill of {BACKFILL_PARTITIONS} materialized {time.monotonic() - started:.0f}s after launch")
    backfill_runs = _runs(dev, {"dagster/backfill": backfill_id})
    assert sorted(next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition") for r in backfill_runs) == sorted(
        BACKFILL_PARTITIONS)
    status = dev.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
    assert status in ("REQUESTED", "COMPLETED", "COMPLETED_SUCCESS"), status

    # 2. The sensor noticed the dropped PDF and its run ingested and judged it.
    run = wait_for(f"the new-papers sensor's run for {partition}",
                   lambda: _finished_run(dev, {"annapurna/trigger": "new_papers", "dagster/partition": partition}),
                   RUN_TIMEOUT_S, interval_s=2, on_timeout=lambda: _all_runs(dev) + "\n" + dev.tail())
    print(f"dropped PDF ingested and judged {time.monotonic() - started:.0f}s after the drop")
    assert run["status"] == "SUCCESS", (run, dev.tail())
    assert run["jobName"] == "ingest_and_judge"
    paper = index.get("dropped-paper")
    assert paper is not None
    assert paper["source"] == "upload"
    assert paper["title"].startswith("Sparse Mixture Routing")  # read from the PDF's own text
    assert "sparse gate" in paper["abstract"]
    assert paper.get("judge_status") == "judged"

    # 3. A request from the command line becomes a program.
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "annapurna"), "request", "generate", "--title", title, "--json"],
        env={**os.environ, "ANNAPURNA_HOME": str(dev.home), "ANNAPURNA_PROFILE": "local",
             "DAGSTER_HOME": str(dev.dagster_home)},
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert cli.returncode == 0, cli.stderr
    message_id = json.loads(cli.stdout)["message_id"]
    started = time.monotonic()
    run = wait_for("the requests sensor's run", lambda: _finished_run(dev, {"annapurna/message_id": message_id}),
                   RUN_TIMEOUT_S, interval_s=2, on_timeout=lambda: _all_runs(dev) + "\n" + dev.tail())
    print(f"request turned into a program in {time.monotonic() - started:.0f}s")
    assert run["status"] == "SUCCESS", (run, dev.tail())
    assert run["jobName"] == "generate_code"
    paper = index.get("dropped-paper")
    assert paper is not None and paper["code_status"] == "generated"
    assert (dev.home / "objects" / "papers-code-artifacts" / paper["code_key"]).is_file()
    # Deleted once its run was on record (a tick or two later).
    spool = dev.home / "queue" / "code-evaluation.fifo" / "messages"
    wait_for("the request message to be deleted", lambda: not any(spool.iterdir()), 60, interval_s=2)
