"""Launcher run inside the job folder: runs program.py, passes its output through, and reports each
`METRICS: {json}` line to Dagster through Pipes when a Pipes session is open (plain run otherwise).

The generated program stays plain Python that prints METRICS lines; this file is ours.
"""

import json
import os
import subprocess
import sys
import threading

PREFIX = "METRICS:"


def parse_metrics_line(line):
    if not line.startswith(PREFIX):
        return None
    try:
        value = json.loads(line[len(PREFIX):].strip())
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _open_pipes():
    if "DAGSTER_PIPES_CONTEXT" not in os.environ:
        return None
    from dagster_pipes import open_dagster_pipes

    return open_dagster_pipes()


def _pump_stderr(src):
    for chunk in iter(lambda: src.read1(65536), b""):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()


# After the program exits, how long its output may still drain: a child it left running can hold
# the pipe open forever, and the sandbox ends such children once we are gone.
DRAIN_AFTER_EXIT_S = 2.0


def run(program="program.py"):
    pipes = _open_pipes()
    proc = subprocess.Popen([sys.executable, "-u", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = threading.Thread(target=_pump_stderr, args=(proc.stderr,), daemon=True)
    err.start()
    lock = threading.Lock()
    state = {"metrics": 0, "closed": False}

    def pump_stdout():
        for raw in proc.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            metrics = parse_metrics_line(raw.decode("utf-8", "replace").strip())
            if metrics is None or pipes is None:
                continue
            with lock:
                if state["closed"]:
                    return
                state["metrics"] += 1
                pipes.report_custom_message({"metrics": metrics})
                if state["metrics"] <= 50 or metrics.get("final"):
                    pipes.log.info(f"METRICS {json.dumps(metrics)}")

    out = threading.Thread(target=pump_stdout, daemon=True)
    out.start()
    code = proc.wait()
    out.join(timeout=DRAIN_AFTER_EXIT_S)
    err.join(timeout=DRAIN_AFTER_EXIT_S)
    if pipes is not None:
        with lock:
            state["closed"] = True
            pipes.report_custom_message({"exit_code": code, "metrics_lines": state["metrics"]})
            pipes.__exit__(None, None, None)
    sys.stdout.flush()
    if code < 0:
        # Die of the same signal, so the executor sees how the program ended.
        os.kill(os.getpid(), -code)
    # os._exit: the pump threads may still block on a pipe a leftover child holds open.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(run())
