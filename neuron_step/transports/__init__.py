"""How a program reaches an executor host and how its results come back.

A transport moves a `Bundle` (the program, the runtime helpers, the environment of one Pipes
session, a time limit) to a host, has it run there in the host's sandbox, and returns an `Outcome`
(status, exit code, capped stdout/stderr, the files the program left: `pipes.jsonl`, `metrics.json`,
plots). The wire form of both is JSON with base64 bytes, so S3 (ssm) and HTTP (executor service)
carry the same documents, and the host side is one function for both (`execute_bundle`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_env_var, encode_env_var

from neuron_step.types import RunStatus

# The program's Pipes messages are written here inside its job folder, wherever that folder is.
PIPES_MESSAGES_FILE = "pipes.jsonl"
# What comes back from a job folder: small, plain files the program or launcher wrote.
MAX_RETURNED_FILE_BYTES = 8 * 1024 * 1024
MAX_RETURNED_FILES = 64


@dataclass
class Bundle:
    run_name: str  # unique and path-safe: <paper_id>-<sha256[:12]>
    sha256: str  # of the program; the executor service keys submissions by it
    files: dict[str, bytes]  # relative name -> content, written into the job folder
    argv: list[str]  # run in the job folder; "{python}" is replaced by the host's interpreter
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 1800.0

    def to_json(self) -> str:
        doc = asdict(self)
        doc["files"] = {name: base64.b64encode(data).decode("ascii") for name, data in self.files.items()}
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Bundle:
        doc = json.loads(text)
        files = {str(name): base64.b64decode(data) for name, data in doc.pop("files").items()}
        for name in files:
            if not is_safe_relative_name(name):
                raise ValueError(f"bundle file name {name!r} is not a plain relative path")
        bundle = cls(files=files, **doc)
        if not is_safe_relative_name(bundle.run_name) or "/" in bundle.run_name:
            raise ValueError(f"run name {bundle.run_name!r} is not path-safe")
        return bundle


@dataclass
class Outcome:
    status: RunStatus
    exit_code: int | None
    wall_s: float
    stdout: bytes
    stderr: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None
    protections: list[str] = field(default_factory=list)
    device: str = "cpu"
    host: str = ""

    def to_json(self) -> str:
        doc = asdict(self)
        for key in ("stdout", "stderr"):
            doc[key] = base64.b64encode(doc[key]).decode("ascii")
        doc["files"] = {name: base64.b64encode(data).decode("ascii") for name, data in self.files.items()}
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Outcome:
        doc = json.loads(text)
        doc["stdout"] = base64.b64decode(doc["stdout"])
        doc["stderr"] = base64.b64decode(doc["stderr"])
        doc["files"] = {name: base64.b64decode(data) for name, data in doc.get("files", {}).items()}
        return cls(**doc)


class TransportError(Exception):
    """The transport could not get a result back (host unreachable, result lost); the program's own
    failures are Outcomes, never this."""


class Transport(ABC):
    name: str

    @abstractmethod
    def execute(self, bundle: Bundle) -> Outcome:
        """Run the bundle on the host and return its outcome; raise TransportError when none came back."""


# The host's sandbox: runs argv in job_dir with env and a wall-time limit; returns an Outcome without files.
SandboxRunner = Callable[[Path, list[str], dict[str, str], float], Outcome]


def is_safe_relative_name(name: str) -> bool:
    parts = Path(name).parts
    return bool(name) and not name.startswith("/") and ".." not in parts and "\x00" not in name


def bundle_sha256(bundle: Bundle) -> str:
    """Identity of everything that decides what runs (program, helpers, argv, environment)."""
    return hashlib.sha256(bundle.to_json().encode("utf-8")).hexdigest()


def relocate_pipes_messages(env: dict[str, str], job_dir: Path) -> dict[str, str]:
    """The Pipes session names a messages path on the orchestrator; on the host it must point into
    the program's own job folder (the only place the sandbox lets it write)."""
    if DAGSTER_PIPES_MESSAGES_ENV_VAR not in env:
        return dict(env)
    params = decode_env_var(env[DAGSTER_PIPES_MESSAGES_ENV_VAR])
    params = {**params, "path": str(job_dir / PIPES_MESSAGES_FILE)}
    return {**env, DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_env_var(params)}


def collect_output_files(job_dir: Path, inputs: set[str]) -> dict[str, bytes]:
    """Plain files the run left in its job folder (not the bundle's own), small enough to return.
    Symlinks are skipped: a program could point one at a host file to smuggle it out."""
    found: dict[str, bytes] = {}
    for path in sorted(job_dir.rglob("*")):
        rel = path.relative_to(job_dir).as_posix()
        if rel in inputs or path.is_symlink() or not path.is_file() or "__pycache__" in path.parts:
            continue
        if path.stat().st_size > MAX_RETURNED_FILE_BYTES or len(found) >= MAX_RETURNED_FILES:
            continue
        found[rel] = path.read_bytes()
    return found


def execute_bundle(bundle: Bundle, work_root: Path, runner: SandboxRunner, python: str,
                   keep_job_dir: bool = False) -> Outcome:
    """Host side of every remote transport: unpack into a fresh job folder, run sandboxed, collect."""
    work_root.mkdir(parents=True, exist_ok=True)
    job_dir = Path(tempfile.mkdtemp(prefix=f"{bundle.run_name}-", dir=work_root))
    try:
        for name, data in bundle.files.items():
            target = job_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        env = relocate_pipes_messages(bundle.env, job_dir)
        argv = [python if a == "{python}" else a for a in bundle.argv]
        outcome = runner(job_dir, argv, env, bundle.timeout_s)
        outcome.files = collect_output_files(job_dir, set(bundle.files))
        outcome.host = outcome.host or os.uname().nodename
        return outcome
    finally:
        if not keep_job_dir:
            _remove_tree(job_dir)


def _remove_tree(path: Path) -> None:
    # A program may leave read-only folders behind; make them writable rather than leak the folder.
    def make_writable_and_retry(func: Callable[..., Any], target: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)


def atomic_write(path: Path, data: bytes) -> None:
    """Write then rename, fsynced, so a reader or a crash never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def status_from_termination(termination: str, exit_code: int | None) -> RunStatus:
    """How the sandbox saw the program end, as a run status. Whether a program that exited 0 also
    reported metrics is judged on the orchestrator, the same for every transport."""
    if termination == "timeout":
        return "timeout"
    if termination == "signal":
        return "killed"
    if termination == "exited" and exit_code == 0:
        return "passed"
    return "failed"


def outcome_from_error(message: str, status: RunStatus = "invalid") -> Outcome:
    return Outcome(status=status, exit_code=None, wall_s=0.0, stdout=b"", stderr=b"", error=message)


def describe(outcome: Outcome) -> dict[str, Any]:
    """A short, JSON-able summary for logs."""
    return {"status": outcome.status, "exit_code": outcome.exit_code, "wall_s": round(outcome.wall_s, 3),
            "files": sorted(outcome.files), "error": outcome.error}
