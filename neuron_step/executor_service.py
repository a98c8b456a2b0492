"""`annapurna-executor`: the executor on the Trainium (or GPU) host.

`annapurna-executor serve --port 8000` is the HTTP executor service of the `http` transport:

- every request but `GET /health` needs `Authorization: Bearer <token>` (the token comes from
  `ANNAPURNA_EXECUTOR_TOKEN` or `--token-file`; the service refuses to start without one);
- `POST /v1/runs` with a bundle submits it. Submissions are idempotent by the program's sha256: a
  second submission of the same program returns the first one's state and runs nothing;
- `GET /v1/runs/<sha256>` answers `queued`, `running` or `done` with the result. A result is
  written to disk (fsynced, renamed into place) before it is ever reported, and submissions are on
  disk before they are acknowledged, so a restart of the service loses neither: unfinished
  submissions are queued again at start.
- one worker thread per slot; each run gets its slot's device variable (`NEURON_RT_VISIBLE_CORES`
  on Trainium, `CUDA_VISIBLE_DEVICES` on a GPU host), so two programs never share a core.

`annapurna-executor run-s3 ...` is what the `ssm` transport's command runs (see transports/ssm.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from neuron_step.compile_cache import LOCAL_ENV, S3_ENV, local_cache_dir, sync_after_run
from neuron_step.transports import (
    Bundle,
    Outcome,
    SandboxRunner,
    atomic_write,
    execute_bundle,
    status_from_termination,
)

log = logging.getLogger("annapurna.executor")

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_REQUEST_BYTES = 64 * 1024 * 1024
TOKEN_ENV = "ANNAPURNA_EXECUTOR_TOKEN"


def host_timeout_cap_s() -> float | None:
    """The host's own ceiling on a program's wall time (`MAX_EXECUTION_TIME`, else
    `TRAINIUM_TIMEOUT`), so an orchestrator cannot ask for more than the host allows."""
    for name in ("MAX_EXECUTION_TIME", "TRAINIUM_TIMEOUT"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return float(value)
            except ValueError:
                log.warning("ignoring %s=%r: not a number of seconds", name, value)
    return None


def host_device() -> str:
    """What the programs here run on, without importing torch into the service."""
    if Path("/dev/neuron0").exists():
        return "neuron"
    if Path("/dev/nvidia0").exists():
        return "cuda"
    return "cpu"


def stage_dataset(name: str | None) -> tuple[list[Path], str | None]:
    """The host's dataset cache (`DATASET_CACHE_DIR`), with `name` fetched into it from the dataset
    store first: the sandbox has no network. Returns the folders to show read-only, and why staging
    failed (the program then reports the dataset missing, and may fall back to synthetic data)."""
    cache = os.environ.get("DATASET_CACHE_DIR")
    if not cache:
        return [], None
    error = None
    if name and name != "synthetic":
        from neuron_step.runtime.dataset_loader import DatasetUnavailable, ensure_cached

        try:
            ensure_cached(name, Path(cache), os.environ.get("DATASET_STORE_URI"))
        except (DatasetUnavailable, ValueError, OSError) as exc:
            error = str(exc)
    return ([Path(cache)] if Path(cache).is_dir() else []), error


def default_runner(memory_bytes: int | None = None) -> SandboxRunner:
    """The host's sandbox (`neuron_step.sandbox`) as a SandboxRunner: the program's environment is
    built from scratch (nothing of the service's own, so not its token), limits apply."""
    from neuron_step.sandbox import SandboxLimits, clean_env, run_sandboxed

    cap = host_timeout_cap_s()

    def run(job_dir: Path, argv: list[str], env: dict[str, str], timeout_s: float) -> Outcome:
        limits = SandboxLimits(timeout_s=min(timeout_s, cap) if cap else timeout_s)
        if memory_bytes:
            limits = dataclasses.replace(limits, memory_bytes=memory_bytes)
        program_env = clean_env({"HOME": str(job_dir), "PYTHONPATH": str(job_dir), "PYTHONUNBUFFERED": "1",
                                 "MPLBACKEND": "Agg", **env})
        read_only, staging_error = stage_dataset(env.get("ANNAPURNA_DATASET"))
        if read_only:
            program_env["DATASET_CACHE_DIR"] = str(read_only[0])
        writable = []
        compile_cache = local_cache_dir()
        if compile_cache is not None:
            compile_cache.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # each slot's sandbox user writes its own graphs; sticky, like /tmp
                os.chmod(compile_cache, 0o1777)
            program_env[LOCAL_ENV] = str(compile_cache)
            writable.append(compile_cache)
        result = run_sandboxed(argv, job_dir, program_env, limits, read_only=read_only, writable=writable)
        sync_after_run()
        error = result.error or (f"dataset staging: {staging_error}" if staging_error else None)
        return Outcome(status=status_from_termination(result.termination, result.exit_code),
                       exit_code=result.exit_code, wall_s=result.wall_s, stdout=result.stdout,
                       stderr=result.stderr, error=error, protections=list(result.protections),
                       device=host_device())

    return run


class RunStore:
    """Submissions and results on the host's disk: `<root>/<sha256>/bundle.json`, `result.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError("not a sha256")
        return self.root / sha256

    def submit(self, bundle_json: bytes, sha256: str) -> bool:
        """Persist a submission; False when this program was already submitted. mkdir is atomic, so
        two simultaneous submissions of one program cannot both win."""
        folder = self.folder(sha256)
        try:
            folder.mkdir()
        except FileExistsError:
            return False
        atomic_write(folder / "bundle.json", bundle_json)
        return True

    def result(self, sha256: str) -> bytes | None:
        path = self.folder(sha256) / "result.json"
        return path.read_bytes() if path.is_file() else None

    def save_result(self, sha256: str, outcome: Outcome) -> None:
        atomic_write(self.folder(sha256) / "result.json", outcome.to_json().encode("utf-8"))

    def exists(self, sha256: str) -> bool:
        return (self.folder(sha256) / "bundle.json").is_file()

    def unfinished(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if SHA256_RE.match(p.name) and (p / "bundle.json").is_file() and not (p / "result.json").is_file())

    def load_bundle(self, sha256: str) -> Bundle:
        return Bundle.from_json((self.folder(sha256) / "bundle.json").read_bytes())


class ExecutorService:
    def __init__(self, state_dir: Path, token: str, runner: SandboxRunner, python: str = sys.executable,
                 slots: int = 1, slot_env_var: str | None = None) -> None:
        if not token:
            raise ValueError("an executor service needs a bearer token")
        self.token = token
        self.runner = runner
        self.python = python
        self.store = RunStore(state_dir / "runs")
        self.work_root = state_dir / "jobs"
        self.slot_env_var = slot_env_var
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.running: set[str] = set()
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self._work, args=(slot,), name=f"slot-{slot}", daemon=True)
                        for slot in range(max(1, slots))]
        for sha256 in self.store.unfinished():  # submissions a previous process accepted but did not finish
            self.queue.put(sha256)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for _ in self.workers:
            self.queue.put(None)

    def submit(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            bundle = Bundle.from_json(body)
        except (ValueError, KeyError, TypeError) as exc:
            return HTTPStatus.BAD_REQUEST, {"error": f"not a bundle: {exc}"}
        if not SHA256_RE.match(bundle.sha256):
            return HTTPStatus.BAD_REQUEST, {"error": "sha256 must be 64 lowercase hex digits"}
        if self.store.submit(body, bundle.sha256):
            self.queue.put(bundle.sha256)
            return HTTPStatus.ACCEPTED, {"sha256": bundle.sha256, "state": "queued", "new": True}
        return HTTPStatus.OK, {**self.state(bundle.sha256), "new": False}

    def state(self, sha256: str) -> dict[str, Any]:
        result = self.store.result(sha256)
        if result is not None:
            return {"sha256": sha256, "state": "done", "result": json.loads(result)}
        with self.lock:
            running = sha256 in self.running
        return {"sha256": sha256, "state": "running" if running else "queued"}

    def _work(self, slot: int) -> None:
        while True:
            sha256 = self.queue.get()
            if sha256 is None:
                return
            with self.lock:
                self.running.add(sha256)
            try:
                self._run_one(sha256, slot)
            finally:
                with self.lock:
                    self.running.discard(sha256)

    def _run_one(self, sha256: str, slot: int) -> None:
        try:
            bundle = self.store.load_bundle(sha256)
            if self.slot_env_var:
                bundle.env = {**bundle.env, self.slot_env_var: str(slot)}
            outcome = execute_bundle(bundle, self.work_root, self.runner, self.python)
        except Exception as exc:  # the service outlives anything one run does; the run records why
            log.exception("run %s failed in the executor", sha256)
            outcome = Outcome(status="failed", exit_code=None, wall_s=0.0, stdout=b"", stderr=b"",
                              error=f"executor error: {type(exc).__name__}: {exc}")
        self.store.save_result(sha256, outcome)


def make_handler(service: ExecutorService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "annapurna-executor"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("%s " + fmt, self.address_string(), *args)

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            # compare_digest: the time taken must not tell how much of a guessed token was right.
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), service.token.encode()):
                return True
            self._send(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/health":
                self._send(HTTPStatus.OK, {"status": "ok", "slots": len(service.workers),
                                           "queued": service.queue.qsize(), "running": len(service.running)})
                return
            if not self._authorized():
                return
            match = re.fullmatch(r"/v1/runs/([0-9a-f]{64})", self.path)
            if not match:
                self._send(HTTPStatus.NOT_FOUND, {"error": "no such path"})
            elif not service.store.exists(match.group(1)):
                self._send(HTTPStatus.NOT_FOUND, {"error": "no such run", "sha256": match.group(1)})
            else:
                self._send(HTTPStatus.OK, service.state(match.group(1)))

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return
            if self.path != "/v1/runs":
                self._send(HTTPStatus.NOT_FOUND, {"error": "no such path"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length <= 0 or length > MAX_REQUEST_BYTES:
                self._send(HTTPStatus.BAD_REQUEST, {"error": f"body must be 1..{MAX_REQUEST_BYTES} bytes"})
                return
            status, doc = service.submit(self.rfile.read(length))
            self._send(status, doc)

    return Handler


def serve(service: ExecutorService, host: str, port: int) -> ThreadingHTTPServer:
    """Start the workers and the HTTP server (in a thread); the caller owns `shutdown()`."""
    service.start()
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="executor-http", daemon=True).start()
    return server


def _read_token(token_file: str | None) -> str:
    if token_file:
        return Path(token_file).read_text(encoding="utf-8").strip()
    return os.environ.get(TOKEN_ENV, "").strip()


def _runner_for(name: str) -> SandboxRunner:
    if name == "sandbox":
        return default_runner()
    raise SystemExit(f"unknown runner {name!r}")


def pull_compile_cache() -> int:
    """Graphs compiled on earlier hosts, before the first program needs them."""
    uri, local = os.environ.get(S3_ENV, "").strip(), local_cache_dir()
    if not uri or local is None:
        return 0
    try:
        import boto3

        from neuron_step.compile_cache import pull

        local.mkdir(parents=True, exist_ok=True)
        got = pull(boto3.client("s3"), uri, local)
        log.info("compile cache: %d graph files pulled from %s", got, uri)
        return got
    except Exception as exc:  # start anyway: programs then compile from scratch
        log.warning("compile cache pull from %s failed: %s", uri, exc)
        return 0


def build_parser() -> argparse.ArgumentParser:
    from neuron_step.transports.ssm import register_host_command  # noqa: PLC0415 - keeps boto3 off `serve`

    parser = argparse.ArgumentParser(prog="annapurna-executor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", default="sandbox", choices=["sandbox"])
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="the HTTP executor service")
    serve_parser.add_argument("--host", default="0.0.0.0")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--state-dir", default="/var/lib/annapurna/executor")
    serve_parser.add_argument("--token-file", default=None, help=f"else ${TOKEN_ENV}")
    serve_parser.add_argument("--slots", type=int, default=int(os.environ.get("ANNAPURNA_SLOTS", "1")))
    serve_parser.add_argument("--slot-env", default=os.environ.get("ANNAPURNA_SLOT_ENV") or None,
                              help="variable naming each slot's device, e.g. NEURON_RT_VISIBLE_CORES")
    serve_parser.add_argument("--python", default=sys.executable, help="interpreter the programs run with")
    run_parser = register_host_command(sub)
    run_parser.add_argument("--python", default=sys.executable)
    return parser


def main(argv: list[str] | None = None, runner_factory: Callable[[str], SandboxRunner] = _runner_for) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "serve":
        token = _read_token(args.token_file)
        if not token:
            print(f"annapurna-executor: no token (set {TOKEN_ENV} or --token-file)", file=sys.stderr)
            return 2
        pull_compile_cache()
        service = ExecutorService(Path(args.state_dir), token, runner_factory(args.runner), python=args.python,
                                  slots=args.slots, slot_env_var=args.slot_env)
        server = serve(service, args.host, args.port)
        log.info("serving on %s:%d with %d slot(s)", args.host, server.server_address[1], len(service.workers))
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            service.stop()
        return 0
    if args.command == "run-s3":
        import boto3  # noqa: PLC0415

        from neuron_step.transports.ssm import run_from_s3  # noqa: PLC0415

        s3 = boto3.client("s3", region_name=args.region)
        outcome = run_from_s3(s3, args.bucket, args.bundle_key, args.result_key, Path(args.work_root),
                              runner_factory(args.runner), args.python)
        print(json.dumps({"status": outcome.status, "exit_code": outcome.exit_code, "wall_s": outcome.wall_s}))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
