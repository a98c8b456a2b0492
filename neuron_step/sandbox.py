"""Run one program in a sandbox, with limits, and always clean up after it.

bubblewrap (`bwrap`) where it is installed: a read-only view of the root, a private `/tmp`, the
host's secrets hidden (`/root`, `/home`, the executor's state, other jobs' folders), only the job
folder writable, its own PID, network, IPC and UTS namespaces, `--die-with-parent`, `--new-session`
and `--clearenv`. bwrap itself is started with an almost empty environment, since its own
`/proc/<pid>/environ` is readable from inside. The interpreter and its virtual environment are bound
back read-only wherever they live (a venv whose python links into `/root/.pyenv`, say).

Without bwrap: resource limits, a scrubbed environment and `unshare -n` when root.

In both cases, when the executor runs as root, the program runs as a user of its own per slot
(`uid_base + slot`): RLIMIT_NPROC is not enforced for root, the program cannot signal or read the
executor (or another slot), and every process left with that uid after the run is killed. Limits
are set with `prlimit` on the child (no preexec_fn in a threaded parent); output is read through
pipes and capped in memory, keeping head and tail. What protections applied is recorded in each
outcome. Whatever the program does, the caller gets an outcome, never an exception.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

Termination = Literal["exited", "timeout", "signal", "not_started"]

# The only variables of the executor's own environment a program may inherit.
_SAFE_ENV = ("LANG", "LC_ALL", "TZ")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Folders that may hold credentials or other runs' data: replaced by empty ones inside bwrap.
DEFAULT_HIDDEN = ("/root", "/home", "/etc/annapurna", "/var/lib/annapurna", "/run/secrets", "/mnt", "/media")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 1800.0
    memory_bytes: int = 8 * 1024**3
    file_size_bytes: int = 1024**3
    max_processes: int = 512  # counted per sandbox user; threads count too (torch starts many)
    max_open_files: int = 1024
    output_cap_bytes: int = 2 * 1024**2  # per stream
    kill_grace_s: float = 3.0
    tmp_size_bytes: int = 512 * 1024**2  # the private /tmp is RAM-backed: bounded
    use_bwrap: bool | None = None  # None: when installed
    uid_base: int = 61000  # when root: slot N runs as uid_base + N


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
    env["PATH"] = SAFE_PATH
    env.update(extra)
    return env


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_uid_processes(uid: int) -> int:
    """SIGKILL every process whose real uid is `uid` (a sandbox user, never root or ours); returns
    how many were signalled. What a program double-forked away from its group ends here."""
    if uid == 0 or uid == os.getuid():
        return 0
    killed = 0
    for _ in range(5):  # a process may fork while we scan; a few passes catch the stragglers
        found = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as f:
                    real_uid = next((int(line.split()[1]) for line in f if line.startswith("Uid:")), None)
            except (OSError, ValueError):
                continue
            if real_uid == uid:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found += 1
                except (ProcessLookupError, PermissionError):
                    pass
        killed += found
        if not found:
            break
        time.sleep(0.05)
    return killed


UID_LOCK_DIR = Path("/run/lock/annapurna-sandbox") if Path("/run/lock").is_dir() else Path("/tmp/annapurna-sandbox-locks")
UID_RANGE = 4096


def acquire_sandbox_uid(base: int, slot: int) -> tuple[int, int]:
    """A uid no other sandbox on this machine is using now, with the open lock file that holds it
    (closing the descriptor releases it, also when the process dies). Several executors share a
    host (parallel Dagster runs, tests), and the cleanup kills every process of its uid, so two
    runs must never share one."""
    import fcntl

    UID_LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    for offset in range(UID_RANGE):
        uid = base + (slot + offset) % UID_RANGE
        fd = os.open(UID_LOCK_DIR / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        # A process of this uid left by a run whose executor died: not ours to share with.
        kill_uid_processes(uid)
        return uid, fd
    raise RuntimeError(f"no free sandbox uid in {base}..{base + UID_RANGE - 1}")


ACCELERATOR_DEVICE_GLOBS = ("/dev/neuron*", "/dev/nvidia*", "/dev/nvidia-caps")


def accelerator_devices() -> list[str]:
    """Trainium (`/dev/neuron*`) and NVIDIA device nodes on this host; a program needs them inside."""
    import glob

    return sorted({path for pattern in ACCELERATOR_DEVICE_GLOBS for path in glob.glob(pattern)})


def device_groups() -> list[int]:
    """Groups that own the accelerator nodes: the sandbox user keeps those (and only those)."""
    groups = set()
    for device in accelerator_devices():
        try:
            st = os.stat(device)
        except OSError:
            continue
        if not st.st_mode & 0o006:  # not usable by "others": the group is what grants access
            groups.add(st.st_gid)
    return sorted(groups)


def _interpreter_roots(python: str) -> list[Path]:
    """Folders the interpreter needs: its venv, the install the venv points at, the real binary's."""
    roots: list[Path] = []
    exe = Path(python)
    if not exe.is_absolute():
        found = shutil.which(python)
        exe = Path(found) if found else exe
    venv = exe.parent.parent
    roots.append(venv)
    cfg = venv / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                roots.append(Path(value.strip()).parent)
    real = Path(os.path.realpath(exe))
    roots.append(real.parent.parent)
    if os.path.realpath(exe) == os.path.realpath(sys.executable):
        roots += [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
    unique: list[Path] = []
    for root in roots:
        resolved = Path(os.path.abspath(root))
        if resolved not in unique and resolved != Path("/") and resolved.exists():
            unique.append(resolved)
    return unique


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _world_reachable(path: Path, folder: bool = False) -> bool:
    """Could an unprivileged user reach `path` (every folder on the way searchable by others) and
    read it (or, for a folder, enter it)?"""
    try:
        for parent in reversed(Path(os.path.abspath(path)).parents):
            if not os.stat(parent).st_mode & 0o001:
                return False
        return bool(os.stat(path).st_mode & (0o001 if folder else 0o004))
    except OSError:
        return False


def bwrap_argv(argv: list[str], workdir: Path, env: dict[str, str], limits: SandboxLimits,
               read_only: Sequence[Path] = (), hidden: Sequence[str] = DEFAULT_HIDDEN,
               inner: Sequence[str] = (), as_root: bool = False,
               writable: Sequence[Path] = ()) -> tuple[list[str], list[str]]:
    """The bwrap command line running `inner + argv`, and the protections it gives (pure).

    As root, bwrap gets no user namespace (it could not map the sandbox user) but keeps only
    CAP_SETUID/CAP_SETGID for `inner`, a setpriv that drops to the slot's user and every capability
    before the program starts. Unprivileged, bwrap makes a user namespace of its own."""
    workdir = Path(os.path.abspath(workdir))
    hide = [Path(h) for h in hidden] + [workdir.parent]
    home = os.environ.get("ANNAPURNA_HOME")
    if home:
        hide.append(Path(os.path.abspath(home)))
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--size", str(limits.tmp_size_bytes), "--tmpfs", "/tmp"]
    # bwrap's /dev holds only null, zero, random and the like: the accelerators are put back.
    for device in accelerator_devices():
        cmd += ["--dev-bind", device, device]
    hidden_applied: list[Path] = []
    for folder in hide:
        if folder.is_dir() and folder != Path("/") and not _under(folder, Path("/tmp")) and folder not in hidden_applied:
            cmd += ["--tmpfs", str(folder)]
            hidden_applied.append(folder)
    covers = [*hidden_applied, Path("/tmp")]
    made: set[Path] = set()

    def bind_back(path: Path, option: str) -> None:
        cover = next((c for c in covers if _under(path, c) and path != c), None)
        if cover is not None:
            # bwrap makes missing mount points 0700, which the sandbox user could not cross.
            for parent in reversed(path.parents):
                if _under(parent, cover) and parent != cover and parent not in made:
                    cmd.extend(["--perms", "0755", "--dir", str(parent)])
                    made.add(parent)
        cmd.extend([option, str(path), str(path)])

    # Bound back after the hiding, so they win: the interpreter, data the program may read.
    for path in _interpreter_roots(argv[0]) + [Path(os.path.abspath(p)) for p in read_only]:
        if path.exists() and any(_under(path, c) and path != c for c in covers):
            bind_back(path, "--ro-bind")
    # Shared writable folders (the Neuron compile cache): the only writes outside the job folder.
    for path in [Path(os.path.abspath(p)) for p in writable]:
        if path.is_dir():
            bind_back(path, "--bind")
    bind_back(workdir, "--bind")
    cmd += ["--chdir", str(workdir)]
    if as_root:
        cmd += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-all"]
    cmd += ["--die-with-parent", "--new-session", "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd += ["--", *inner, *argv]
    protections = ["bwrap", "read-only-root", "private-tmp", "pid-namespace", "network-namespace",
                   "ipc-namespace", "die-with-parent", "new-session", "clean-env",
                   f"hidden:{','.join(map(str, hidden_applied))}"]
    if accelerator_devices():
        protections.append(f"devices:{','.join(accelerator_devices())}")
    return cmd, protections


def _chown_tree(path: Path, uid: int) -> None:
    os.chown(path, uid, uid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                os.lchown(os.path.join(root, name), uid, uid)
            except OSError:
                pass


def _limits_argv(limits: SandboxLimits) -> list[str]:
    return ["prlimit", f"--as={limits.memory_bytes}", f"--fsize={limits.file_size_bytes}",
            f"--nofile={limits.max_open_files}", f"--nproc={limits.max_processes}", "--"]


def run_sandboxed(argv: list[str], workdir: Path, env: dict[str, str], limits: SandboxLimits,
                  slot: int = 0, read_only: Sequence[Path] = (), writable: Sequence[Path] = ()) -> SandboxOutcome:
    """Run argv in workdir (which must be the only thing it can write) with env and limits."""
    protections = ["process-group", "wall-time-limit", "output-cap", "clean-env"]
    notes: list[str] = []
    is_root = os.geteuid() == 0
    bwrap = shutil.which("bwrap") if limits.use_bwrap in (None, True) else None
    if limits.use_bwrap and not bwrap:
        notes.append("bwrap requested but not installed")
    prlimit = _limits_argv(limits) if shutil.which("prlimit") else []
    setpriv = shutil.which("setpriv") if is_root else None
    sandbox_uid, uid_lock = acquire_sandbox_uid(limits.uid_base, slot) if setpriv else (None, None)
    try:
        return _run(argv, workdir, env, limits, read_only, protections, notes, is_root, bwrap, prlimit,
                    setpriv, sandbox_uid, writable)
    finally:
        if uid_lock is not None:
            os.close(uid_lock)


def _run(argv: list[str], workdir: Path, env: dict[str, str], limits: SandboxLimits, read_only: Sequence[Path],
         protections: list[str], notes: list[str], is_root: bool, bwrap: str | None, prlimit: list[str],
         setpriv: str | None, sandbox_uid: int | None, writable: Sequence[Path] = ()) -> SandboxOutcome:
    groups = device_groups()
    group_arg = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    drop = ([setpriv, f"--reuid={sandbox_uid}", f"--regid={sandbox_uid}", group_arg,
             "--inh-caps=-all", "--bounding-set=-all", "--"] if setpriv else [])
    if bwrap:
        # As root the limits go inside, after the drop to the sandbox user (for root RLIMIT_NPROC is
        # not enforced); unprivileged they wrap bwrap itself.
        inner = [*drop, *prlimit] if is_root else []
        cmd, bw_protections = bwrap_argv(argv, workdir, env, limits, read_only, inner=inner, as_root=is_root,
                                         writable=writable)
        cmd[0] = bwrap
        if not is_root:
            cmd = [*prlimit, *cmd]
        protections += bw_protections
        # bwrap's own environ is readable from inside: start it with nothing worth reading.
        popen_env = {"PATH": SAFE_PATH}
    else:
        interpreter = Path(os.path.realpath(shutil.which(argv[0]) or argv[0]))
        if sandbox_uid is not None and not (_world_reachable(interpreter) and _world_reachable(workdir.parent, folder=True)):
            notes.append("runs as root: the interpreter or the job folder is not reachable by an unprivileged user")
            sandbox_uid, drop = None, []
        cmd = [*drop, *prlimit, *argv]
        if is_root and shutil.which("unshare"):
            cmd = ["unshare", "--net", "--", *cmd]  # needs root, so before the drop
            protections.append("network-namespace")
        else:
            notes.append("network open: neither bwrap nor root for unshare -n")
        popen_env = dict(env)
    if prlimit:
        protections.append("rlimits")
    if sandbox_uid is not None:
        _chown_tree(workdir, sandbox_uid)
        protections.append(f"own-uid:{sandbox_uid}")
    protections[:] = list(dict.fromkeys([*protections, *(f"note:{n}" for n in notes)]))

    out, err = CappedBuffer(limits.output_cap_bytes), CappedBuffer(limits.output_cap_bytes)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=popen_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
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
    # Children the program left behind: its group, then anything else still running as its user
    # (a double fork leaves the group; with bwrap the PID namespace already took them along).
    _kill_group(proc.pid, signal.SIGKILL)
    if sandbox_uid is not None:
        kill_uid_processes(sandbox_uid)
    for r in readers:
        # A grandchild that escaped the group may hold the pipes open; after the kills it cannot.
        r.join(timeout=5)
    if sandbox_uid is not None:
        try:
            _chown_tree(workdir, os.getuid())  # the executor reads and removes the folder afterwards
        except OSError:
            pass
    code = proc.returncode
    sig = -code if code is not None and code < 0 else None
    if bwrap and code is not None and 128 < code <= 128 + 64 and termination == "exited":
        sig = code - 128  # bwrap reports a child killed by signal N as exit status 128 + N
    if termination == "exited" and sig is not None:
        termination = "signal"
    return SandboxOutcome(
        termination=termination, exit_code=code, signal=sig, wall_s=wall, stdout=out.getvalue(),
        stderr=err.getvalue(), stdout_dropped=out.dropped, stderr_dropped=err.dropped, protections=protections,
    )
