"""Hostile programs through `annapurna exec` (the pipeline's runner and sandbox): each ends with a
clear status, the executor prints its result, and nothing the program started is left running.

Short limits keep each test quick. With bwrap installed (`.ci/run` installs it) these exercise the
bubblewrap sandbox; without it, the fallback (limits, scrubbed environment, `unshare -n` as root).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from neuron_step.pipes_client import NeuronPipesClient, job_for_code

REPO = Path(__file__).resolve().parents[1]
SECRET = f"hunter2-{uuid.uuid4().hex}"
CLI = "import sys; from annapurna_assets.cli import main; sys.exit(main(sys.argv[1:]))"


def annapurna_exec(tmp_path: Path, code: str, timeout: float = 10.0, memory_gb: float = 2.0,
                   extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    program = tmp_path / "program.py"
    program.write_text(code)
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET, "ANNAPURNA_EXECUTOR_TOKEN": SECRET, **(extra_env or {})}
    done = subprocess.run([sys.executable, "-c", CLI, "exec", str(program), "--timeout", str(timeout),
                           "--memory-gb", str(memory_gb), "--json", "--artifacts", str(tmp_path / "artifacts")],
                          cwd=tmp_path, env=env, capture_output=True, timeout=timeout + 120)
    assert done.stdout.strip(), done.stderr.decode()[-3000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return [p for p in pids if p != os.getpid()]


def processes_with(marker: str) -> list[str]:
    """Command lines of live (not zombie) processes mentioning `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and entry.name != str(os.getpid()):
            found.append(cmdline)
    return found


def test_endless_loop_times_out(tmp_path: Path) -> None:
    result = annapurna_exec(tmp_path, "while True:\n    pass\n", timeout=2)
    assert result["status"] == "timeout"
    assert "wall-time" in result["error"]


def test_fork_bomb_is_contained(tmp_path: Path) -> None:
    marker = f"forkbomb-{uuid.uuid4().hex}"
    code = (f"import os, sys\nsys.argv.append({marker!r})\n"
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    result = annapurna_exec(tmp_path, code, timeout=3)
    assert result["status"] in ("timeout", "failed", "killed")
    assert processes_with(marker) == []


def test_memory_hog_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n"
    result = annapurna_exec(tmp_path, code, timeout=20, memory_gb=1.0)
    assert result["status"] in ("failed", "killed")
    assert result["status"] == "killed" or "MemoryError" in result["stderr_tail"]


def test_gigabytes_of_output_are_capped(tmp_path: Path) -> None:
    code = "import sys\nline = 'x' * (1 << 20)\nfor _ in range(2048):\n    sys.stdout.write(line)\n"
    result = annapurna_exec(tmp_path, code, timeout=10)
    # 2 GiB written; what is kept is bounded by the 2 MiB per-stream cap (plus its marker line).
    assert result["stdout_bytes"] <= 2 * 1024**2 + 200
    assert result["status"] in ("failed", "timeout")  # no METRICS line, or cut off by the limit


def test_writes_outside_its_folder_do_not_land(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    code = ("import json, os\nhits = []\n"
            f"for path in [{str(outside)!r}, '/etc/annapurna-pwned', os.path.expanduser('~/../pwned'), '/var/tmp/pwned']:\n"
            "    try:\n        open(path, 'w').write('x')\n        hits.append(path)\n    except OSError:\n        pass\n"
            "print('METRICS: ' + json.dumps({'escaped': len(hits)}))\n")
    result = annapurna_exec(tmp_path, code, timeout=10)
    assert not outside.exists()
    assert not Path("/etc/annapurna-pwned").exists() and not Path("/var/tmp/pwned").exists()
    # A write may "succeed" into the sandbox's own throw-away /tmp; never onto the host.
    assert result["status"] == "passed"


def test_the_executors_environment_is_out_of_reach(tmp_path: Path) -> None:
    code = ("import glob, json, os\nseen = []\n"
            "seen.append(repr(dict(os.environ)))\n"
            "for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
            "    try:\n        seen.append(open(path, 'rb').read().decode(errors='replace'))\n"
            "    except OSError:\n        pass\n"
            "print('\\n'.join(seen))\nprint('METRICS: ' + json.dumps({'read': len(seen)}))\n")
    result = annapurna_exec(tmp_path, code, timeout=10)
    assert result["status"] == "passed"
    assert SECRET not in result["stdout_tail"] and SECRET not in result["stderr_tail"]
    assert "AWS_SECRET_ACCESS_KEY" not in result["stdout_tail"]


def test_network_connections_fail(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'leak')\n"
        result = annapurna_exec(tmp_path, code, timeout=10)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever connected
    assert result["status"] == "failed"
    assert "Error" in result["stderr_tail"]


def test_killing_its_parent_and_everything_it_can_see(tmp_path: Path) -> None:
    code = ("import os, signal, time\n"
            "os.kill(os.getppid(), signal.SIGKILL)\n"
            "os.kill(-1, signal.SIGKILL)\n"
            "time.sleep(5)\n")
    result = annapurna_exec(tmp_path, code, timeout=10)
    # The executor lived to print its result; the program's own process tree died.
    assert result["status"] == "killed"


def test_children_left_running_are_killed(tmp_path: Path) -> None:
    marker = f"orphan-{uuid.uuid4().hex}"
    code = ("import json, os, subprocess, sys\n"
            "if os.fork() == 0:\n    os.setsid()\n"
            f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {marker!r}])\n"
            "    os._exit(0)\n"
            "print('METRICS: ' + json.dumps({'spawned': 1}))\n")
    result = annapurna_exec(tmp_path, code, timeout=10)
    assert result["status"] == "passed"
    assert processes_with(marker) == []


def test_protections_are_recorded(tmp_path: Path) -> None:
    result = annapurna_exec(tmp_path, "import json\nprint('METRICS: ' + json.dumps({'ok': 1}))\n", timeout=10)
    protections = result["protections"]
    assert {"process-group", "wall-time-limit", "output-cap", "clean-env"} <= set(protections)
    if Path("/usr/bin/bwrap").exists():
        assert {"bwrap", "read-only-root", "private-tmp", "pid-namespace", "network-namespace"} <= set(protections)


def test_a_hostile_program_does_not_disturb_the_other_slot(tmp_path: Path) -> None:
    client = NeuronPipesClient(slots=2, timeout_s=15, time_budget_s=5, work_root=str(tmp_path / "jobs"),
                               memory_limit_gb=2.0)
    killer = job_for_code("import os, signal, time\nos.kill(-1, signal.SIGKILL)\ntime.sleep(5)\n", paper_id="killer")
    calm = job_for_code("import json, time\nfor i in range(5):\n    time.sleep(0.2)\n"
                        "    print('METRICS: ' + json.dumps({'step': i, 'loss': 1 / (i + 1)}))\n", paper_id="calm")
    runs = {r.paper_id: r for r in client.run_programs(None, [killer, calm])}
    assert runs["killer"].status == "killed"
    assert runs["calm"].status == "passed" and len(runs["calm"].metrics) == 5
    assert runs["killer"].slot != runs["calm"].slot


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback's network namespace and own user need root")
def test_fallback_without_bwrap_still_contains_the_program(tmp_path: Path) -> None:
    """Where bwrap is missing: resource limits, a scrubbed environment, `unshare -n`, and (as root,
    when the interpreter is readable by others) a user of its own, which keeps the executor's
    environment and processes out of reach. When that user cannot be used, the result says so."""
    marker = f"orphan-{uuid.uuid4().hex}"
    # Stands in for the executor as a target: a root process the program must not be able to kill.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            server.settimeout(0.5)
            code = ("import glob, json, os, signal, socket, subprocess, sys\n"
                    "seen = []\n"
                    "for path in glob.glob('/proc/*/environ'):\n"
                    "    try:\n        seen.append(open(path, 'rb').read().decode(errors='replace'))\n"
                    "    except OSError:\n        pass\n"
                    "print('\\n'.join(seen))\n"
                    f"try:\n    os.kill({bystander.pid}, signal.SIGKILL)\n    killed = 1\nexcept OSError:\n    killed = 0\n"
                    f"try:\n    socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2)\n    net = 1\n"
                    "except OSError:\n    net = 0\n"
                    f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {marker!r}], start_new_session=True)\n"
                    "print('METRICS: ' + json.dumps({'net': net, 'killed': killed}))\n")
            os.environ["ANNAPURNA_TEST_SECRET"] = SECRET
            try:
                client = NeuronPipesClient(slots=1, timeout_s=20, work_root=str(tmp_path / "jobs"), use_bwrap=False)
                run = client.run_one(None, job_for_code(code), slot=0)
            finally:
                del os.environ["ANNAPURNA_TEST_SECRET"]
            with pytest.raises(TimeoutError):
                server.accept()
        assert run.status == "passed", (run.error, run.stderr[-800:])
        assert "bwrap" not in run.protections
        assert {"rlimits", "network-namespace", "clean-env"} <= set(run.protections)
        assert run.final_metrics["net"] == 0
        if any(p.startswith("own-uid:") for p in run.protections):
            assert run.final_metrics["killed"] == 0 and bystander.poll() is None
            assert SECRET.encode() not in run.stdout
            assert processes_with(marker) == []
        else:
            # e.g. a python under /root (0700): the program ran as root, and the result records it.
            # Known gap of this mode: a child that left the process group outlives the run.
            assert any("runs as root" in p for p in run.protections)
    finally:
        bystander.kill()
        bystander.wait()
        for pid in pids_with(marker):
            os.kill(pid, 9)
