"""Run one program in its own process group and folder, with limits, and always clean up after it.

Limits are set with `prlimit` on the child (so no preexec_fn runs in a threaded parent); output is
read through pipes and capped in memory, keeping the head and the tail; on timeout the whole process
group is killed. Whatever the program does, the caller gets an outcome, never an exception.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

Termination = Literal["exited", "timeout", "signal", "not_started"]

# Names that must never reach a program: credentials and the pipeline's own configuration.
_SAFE_ENV = ("LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 1800.0
    memory_bytes: int = 8 * 1024**3
    file_size_bytes: int = 1024**3
    max_processes: int = 512
    max_open_files: int = 1024
    output_cap_bytes: int = 2 * 1024**2  # per stream
    kill_grace_s: float = 3.0


@dataclass
class SandboxOutcome:
    termination: Termination
    exit_code: int | None
    signal: int | None
    wall_s: float
    stdout: bytes
    stderr: bytes
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    protections: list[str] = field(default_factory=list)
    error: str | None = None


class CappedBuffer:
    """Keeps the first 3/4 of the cap and the last 1/4; counts what was dropped in between."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap * 3 // 4
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def write(self, chunk: bytes) -> None:
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_cap:
                cut = len(self.tail) - self.tail_cap
                self.dropped += cut
                del self.tail[:cut]

    def getvalue(self) -> bytes:
        if not self.dropped:
            return bytes(self.head + self.tail)
        marker = f"\n[... {self.dropped} bytes dropped by the output cap ...]\n".encode()
        return bytes(self.head) + marker + bytes(self.tail)


def _drain(stream: IO[bytes], buf: CappedBuffer) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
        buf.write(chunk)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in _SAFE_ENV if k in os.environ}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra)
    return env


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_sandboxed(argv: list[str], workdir: Path, env: dict[str, str], limits: SandboxLimits) -> SandboxOutcome:
    protections = ["process-group", "wall-time-limit", "output-cap", "clean-env"]
    prefix: list[str] = []
    if shutil.which("prlimit"):
        prefix = [
            "prlimit", f"--as={limits.memory_bytes}", f"--fsize={limits.file_size_bytes}",
            f"--nofile={limits.max_open_files}", f"--nproc={limits.max_processes}", "--",
        ]
        protections.append("rlimits")
    out, err = CappedBuffer(limits.output_cap_bytes), CappedBuffer(limits.output_cap_bytes)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            prefix + argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
    except OSError as e:
        return SandboxOutcome("not_started", None, None, 0.0, b"", b"", protections=protections,
                              error=f"could not start: {e}")
    readers = [threading.Thread(target=_drain, args=(s, b), daemon=True) for s, b in ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    termination: Termination = "exited"
    try:
        proc.wait(timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        termination = "timeout"
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=limits.kill_grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.monotonic() - start
    # Children the program left behind die with their group.
    _kill_group(proc.pid, signal.SIGKILL)
    for r in readers:
        r.join(timeout=5)
    code = proc.returncode
    sig = -code if code is not None and code < 0 else None
    if termination == "exited" and sig is not None:
        termination = "signal"
    return SandboxOutcome(
        termination=termination, exit_code=code, signal=sig, wall_s=wall, stdout=out.getvalue(),
        stderr=err.getvalue(), stdout_dropped=out.dropped, stderr_dropped=err.dropped, protections=protections,
    )
