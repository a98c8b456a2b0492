"""The executor service on 127.0.0.1 with a bearer token, and the http transport that talks to it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_env_var

from neuron_step.executor_service import ExecutorService, default_runner, serve
from neuron_step.transports import Bundle, Outcome, SandboxRunner, TransportError
from neuron_step.transports.http import HttpTransport

TOKEN = "s3cret-token-for-tests"
REPO = Path(__file__).resolve().parents[1]


def make_bundle(code: str, env: dict[str, str] | None = None, timeout_s: float = 30.0) -> Bundle:
    sha = hashlib.sha256(code.encode()).hexdigest()
    return Bundle(run_name=f"paper-{sha[:12]}", sha256=sha, files={"program.py": code.encode()},
                  argv=["{python}", "program.py"], env=env or {}, timeout_s=timeout_s)


class ObservedRunner:
    """The real sandbox runner, counting its runs and holding each at a barrier until `parties`
    runs are under way at once (so a test can prove two slots run in parallel without timing)."""

    def __init__(self, parties: int = 1) -> None:
        self.inner: SandboxRunner = default_runner()
        self.calls = 0
        self.barrier = threading.Barrier(parties, timeout=30) if parties > 1 else None
        self.lock = threading.Lock()

    def __call__(self, job_dir: Path, argv: list[str], env: dict[str, str], timeout_s: float) -> Outcome:
        with self.lock:
            self.calls += 1
        if self.barrier is not None:
            self.barrier.wait()
        return self.inner(job_dir, argv, env, timeout_s)


@pytest.fixture
def runner() -> ObservedRunner:
    return ObservedRunner()


@pytest.fixture
def service(tmp_path: Path, runner: ObservedRunner) -> Iterator[tuple[ExecutorService, str]]:
    svc = ExecutorService(tmp_path / "state", TOKEN, runner, slots=2, slot_env_var="NEURON_RT_VISIBLE_CORES")
    server = serve(svc, "127.0.0.1", 0)
    try:
        yield svc, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        svc.stop()


def test_requests_without_the_token_are_refused(service: tuple[ExecutorService, str]) -> None:
    svc, url = service
    body = make_bundle("print('hi')\n").to_json()
    assert httpx.post(f"{url}/v1/runs", content=body).status_code == 401
    assert httpx.post(f"{url}/v1/runs", content=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{url}/v1/runs", content=body, headers={"Authorization": TOKEN}).status_code == 401
    assert httpx.get(f"{url}/v1/runs/{'a' * 64}").status_code == 401
    # Nothing was stored by the refused submissions.
    assert list(svc.store.root.iterdir()) == []
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["slots"] == 2


def test_http_transport_runs_a_program_and_brings_back_output_and_files(service: tuple[ExecutorService, str]) -> None:
    _, url = service
    code = ("import json, os\n"
            "print('METRICS: ' + json.dumps({'step': 1, 'loss': 0.5}))\n"
            "open('metrics.json', 'w').write(json.dumps([{'loss': 0.5}]))\n"
            "os.makedirs('plots', exist_ok=True); open('plots/curve.png', 'wb').write(b'\\x89PNG')\n"
            "print('core', os.environ.get('NEURON_RT_VISIBLE_CORES'))\n"
            "import sys; print('to stderr', file=sys.stderr)\n")
    outcome = HttpTransport(url, TOKEN, poll_interval_s=0.05).execute(make_bundle(code))
    assert outcome.status == "passed" and outcome.exit_code == 0
    assert b'METRICS: {"step": 1, "loss": 0.5}' in outcome.stdout
    assert outcome.stderr.strip() == b"to stderr"
    assert json.loads(outcome.files["metrics.json"]) == [{"loss": 0.5}]
    assert outcome.files["plots/curve.png"] == b"\x89PNG"
    assert "program.py" not in outcome.files  # the bundle's own files do not come back
    core = outcome.stdout.decode().split("core ")[1].strip()
    assert core in ("0", "1")


def test_failing_program_is_an_ordinary_result(service: tuple[ExecutorService, str]) -> None:
    _, url = service
    outcome = HttpTransport(url, TOKEN, poll_interval_s=0.05).execute(make_bundle("raise SystemExit(3)\n"))
    assert outcome.status == "failed" and outcome.exit_code == 3


def test_submission_is_idempotent_by_program_sha256(service: tuple[ExecutorService, str],
                                                   runner: ObservedRunner) -> None:
    _, url = service
    transport = HttpTransport(url, TOKEN, poll_interval_s=0.05)
    bundle = make_bundle("import random; print(random.random())\n")
    first = transport.execute(bundle)
    again = transport.submit(bundle)
    assert again["new"] is False and again["state"] == "done"
    second = transport.execute(bundle)
    assert first.status == second.status == "passed"
    assert first.stdout == second.stdout  # the stored result, not a new random number
    assert runner.calls == 1  # the program ran once for three submissions


def test_two_slots_run_two_programs_at_once(tmp_path: Path) -> None:
    # The runner holds each run until two are under way: with one slot this would never pass.
    runner = ObservedRunner(parties=2)
    svc = ExecutorService(tmp_path / "state", TOKEN, runner, slots=2, slot_env_var="NEURON_RT_VISIBLE_CORES")
    server = serve(svc, "127.0.0.1", 0)
    try:
        transport = HttpTransport(f"http://127.0.0.1:{server.server_address[1]}", TOKEN, poll_interval_s=0.05)
        bundles = [make_bundle(f"import os; print(os.environ['NEURON_RT_VISIBLE_CORES']) # {i}\n") for i in (1, 2)]
        for b in bundles:
            transport.submit(b)
        outcomes = [transport.execute(b) for b in bundles]
    finally:
        server.shutdown()
        server.server_close()
        svc.stop()
    assert [o.status for o in outcomes] == ["passed", "passed"], [o.error for o in outcomes]
    assert sorted(o.stdout.strip() for o in outcomes) == [b"0", b"1"]  # a slot is never shared


def test_timeout_and_crash_are_recorded_and_the_service_carries_on(service: tuple[ExecutorService, str]) -> None:
    _, url = service
    transport = HttpTransport(url, TOKEN, poll_interval_s=0.05)
    slow = transport.execute(make_bundle("import time\nwhile True: time.sleep(0.1)\n", timeout_s=1.0))
    assert slow.status == "timeout"
    crashed = transport.execute(make_bundle("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"))
    assert crashed.status == "killed"
    assert transport.execute(make_bundle("print('still serving')\n")).stdout == b"still serving\n"


def test_pipes_messages_are_written_inside_the_job_folder(service: tuple[ExecutorService, str]) -> None:
    _, url = service
    # The orchestrator's path means nothing on the host; the service points it into the job folder.
    env = {DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_env_var({"path": "/orchestrator/only/messages.jsonl"})}
    code = ("import os\nfrom dagster_pipes import decode_env_var\n"
            "path = decode_env_var(os.environ['DAGSTER_PIPES_MESSAGES'])['path']\n"
            "assert path == os.path.join(os.getcwd(), 'pipes.jsonl'), path\n"
            "open(path, 'w').write('{\"method\": \"closed\"}\\n')\n")
    outcome = HttpTransport(url, TOKEN, poll_interval_s=0.05).execute(make_bundle(code, env=env))
    assert outcome.status == "passed", outcome.stderr
    assert outcome.files["pipes.jsonl"] == b'{"method": "closed"}\n'


def test_malformed_submissions_get_400(service: tuple[ExecutorService, str]) -> None:
    _, url = service
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{url}/v1/runs", content=b"{not json", headers=headers).status_code == 400
    evil = json.loads(make_bundle("print(1)\n").to_json())
    evil["files"] = {"../../escape.py": "cHJpbnQoMSk="}
    assert httpx.post(f"{url}/v1/runs", content=json.dumps(evil), headers=headers).status_code == 400
    short = json.loads(make_bundle("print(1)\n").to_json())
    short["sha256"] = "abc"
    assert httpx.post(f"{url}/v1/runs", content=json.dumps(short), headers=headers).status_code == 400
    with pytest.raises(TransportError, match="refused the bearer token"):
        HttpTransport(url, "wrong", poll_interval_s=0.05).execute(make_bundle("print(1)\n"))


def test_results_are_on_disk_and_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = make_bundle("print('finished before the restart')\n")
    pending = make_bundle("print('accepted but never run')\n")
    svc = ExecutorService(state, TOKEN, default_runner())
    server = serve(svc, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    assert HttpTransport(url, TOKEN, poll_interval_s=0.05).execute(done).status == "passed"
    server.shutdown()
    server.server_close()
    svc.stop()
    assert json.loads((state / "runs" / done.sha256 / "result.json").read_text())["status"] == "passed"
    # A submission persisted by a process that died before running it.
    assert svc.store.submit(pending.to_json().encode(), pending.sha256)

    svc2 = ExecutorService(state, TOKEN, default_runner())
    server2 = serve(svc2, "127.0.0.1", 0)
    try:
        client = HttpTransport(f"http://127.0.0.1:{server2.server_address[1]}", TOKEN, poll_interval_s=0.05)
        assert client.state(done.sha256)["state"] == "done"
        assert client.execute(done).stdout == b"finished before the restart\n"
        assert client.execute(pending).stdout == b"accepted but never run\n"
    finally:
        server2.shutdown()
        server2.server_close()
        svc2.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_console_entry_point_serves_with_token_and_refuses_without(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "neuron_step.executor_service", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--state-dir", str(tmp_path / "state"), "--slots", "2"]
    env = {k: v for k, v in os.environ.items() if k != "ANNAPURNA_EXECUTOR_TOKEN"}
    no_token = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, timeout=60)
    assert no_token.returncode == 2 and b"no token" in no_token.stderr

    proc = subprocess.Popen(cmd, env={**env, "ANNAPURNA_EXECUTOR_TOKEN": TOKEN}, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        transport = HttpTransport(f"http://127.0.0.1:{port}", TOKEN, poll_interval_s=0.05)
        transport.wait_healthy(timeout_s=30)
        assert httpx.post(f"http://127.0.0.1:{port}/v1/runs", content=b"{}").status_code == 401
        outcome = transport.execute(make_bundle("print(6 * 7)\n"))
        assert outcome.status == "passed" and outcome.stdout == b"42\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_host_stages_the_programs_dataset_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuron_step.pipes_client import runtime_files
    from tests.test_dataset_loader import _pack, write_all

    written = tmp_path / "published"
    write_all(written)
    store = tmp_path / "store"
    (store / "mnist").mkdir(parents=True)
    (store / "mnist" / "mnist.tar.gz").write_bytes(_pack(written / "mnist"))
    monkeypatch.setenv("DATASET_CACHE_DIR", str(tmp_path / "host-cache"))
    monkeypatch.setenv("DATASET_STORE_URI", store.as_uri())
    svc = ExecutorService(tmp_path / "state", TOKEN, default_runner())
    server = serve(svc, "127.0.0.1", 0)
    try:
        code = ("import json\nfrom dataset_loader import load_dataset\n"
                "train, test, info = load_dataset('mnist', batch_size=16)\n"
                "print('METRICS: ' + json.dumps({'n_train': info['n_train']}))\n")
        bundle = make_bundle(code, env={"ANNAPURNA_DATASET": "mnist"})
        bundle.files.update(runtime_files())
        outcome = HttpTransport(f"http://127.0.0.1:{server.server_address[1]}", TOKEN, poll_interval_s=0.05).execute(bundle)
    finally:
        server.shutdown()
        server.server_close()
        svc.stop()
    assert outcome.status == "passed", outcome.stderr[-800:]
    assert b'METRICS: {"n_train": 80}' in outcome.stdout
    assert (tmp_path / "host-cache" / "mnist" / ".complete").is_file()
