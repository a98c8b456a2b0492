"""How much the neuron step's runner costs, and how busy it keeps its slots. Run by hand:

    .venv/bin/python bench/bench_runner.py [--repeat 10] [--batch 10] [--slots 2] [--sleep 1.0]

1. Overhead per program: a program that prints one METRICS line and exits, run
   (a) directly (`python program.py`), (b) through the sandbox alone, (c) through the Pipes client
   without a Dagster context (job folder, runtime helpers, launcher, sandbox, parsing), (d) the same
   inside a Dagster asset (one Pipes session per program). Overhead = (b|c|d) - (a).
2. Slot occupancy during a batch: `--batch` programs that each sleep `--sleep` seconds, over
   `--slots` slots. Busy time is the sum of the time each slot held a program; occupancy =
   busy / (slots x batch wall time); 1.0 means no slot ever waited for the runner.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuron_step.pipes_client import NeuronPipesClient, job_for_code  # noqa: E402
from neuron_step.sandbox import SandboxLimits, clean_env, run_sandboxed  # noqa: E402
from neuron_step.types import ProgramJob, ProgramRun  # noqa: E402

TRIVIAL = "import json\nprint('METRICS: ' + json.dumps({'loss': 1.0}))\n"


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def overhead(repeat: int, root: Path) -> dict[str, float]:
    program = root / "trivial.py"
    program.write_text(TRIVIAL)
    direct = [timed(lambda: subprocess.run([sys.executable, str(program)], capture_output=True, check=True))
              for _ in range(repeat)]
    job_dir = root / "sandbox-job"
    job_dir.mkdir()
    (job_dir / "program.py").write_text(TRIVIAL)
    sandbox = [timed(lambda: run_sandboxed([sys.executable, "program.py"], job_dir, clean_env({}),
                                           SandboxLimits(timeout_s=60), slot=0)) for _ in range(repeat)]
    client = NeuronPipesClient(slots=1, timeout_s=60, time_budget_s=30, work_root=str(root / "jobs"))
    jobs = [job_for_code(TRIVIAL + f"# {i}\n", paper_id=f"b{i}") for i in range(repeat)]
    no_context = [timed(lambda j=j: client.run_one(None, j, 0)) for j in jobs]
    with_context: list[float] = []

    @dg.asset
    def bench_runs(context):  # noqa: ANN001 - Dagster refuses a string annotation here
        for j in jobs:
            with_context.append(timed(lambda j=j: client.run_one(context, j, 0)))
        return dg.MaterializeResult()

    dg.materialize([bench_runs])
    base = statistics.median(direct)
    return {"direct_python_s": base, "sandbox_s": statistics.median(sandbox),
            "client_no_context_s": statistics.median(no_context), "client_pipes_session_s": statistics.median(with_context),
            "sandbox_overhead_s": statistics.median(sandbox) - base,
            "client_overhead_s": statistics.median(no_context) - base,
            "pipes_overhead_s": statistics.median(with_context) - base}


def occupancy(batch: int, slots: int, sleep_s: float, root: Path) -> dict[str, float]:
    code = f"import json, time\ntime.sleep({sleep_s})\nprint('METRICS: ' + json.dumps({{'loss': 1.0}}))\n"
    client = NeuronPipesClient(slots=slots, timeout_s=120, time_budget_s=60, work_root=str(root / "batch"))
    busy: dict[int, float] = {}
    lock = threading.Lock()
    original = NeuronPipesClient.run_one

    def measured(self: NeuronPipesClient, context: object, job: ProgramJob, slot: int,
                 transport: object = None) -> ProgramRun:
        start = time.perf_counter()
        try:
            return original(self, context, job, slot, transport)  # type: ignore[arg-type]
        finally:
            with lock:
                busy[slot] = busy.get(slot, 0.0) + time.perf_counter() - start

    NeuronPipesClient.run_one = measured  # type: ignore[method-assign]
    try:
        jobs = [job_for_code(code + f"# {i}\n", paper_id=f"s{i}") for i in range(batch)]
        start = time.perf_counter()
        runs = list(client.run_programs(None, jobs))
        wall = time.perf_counter() - start
    finally:
        NeuronPipesClient.run_one = original  # type: ignore[method-assign]
    program_s = sum(r.wall_s for r in runs)
    return {"programs": len(runs), "passed": sum(r.status == "passed" for r in runs), "wall_s": wall,
            "slot_busy_s": sum(busy.values()), "occupancy": sum(busy.values()) / (slots * wall),
            "program_share_of_busy": program_s / sum(busy.values()),
            "ideal_wall_s": batch * sleep_s / slots}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        root = Path(tmp)
        o = overhead(args.repeat, root)
        print(f"per program (median of {args.repeat}):")
        for key, value in o.items():
            print(f"  {key:24s} {value:7.3f}")
        print(f"  ratio client/direct      {o['client_no_context_s'] / o['direct_python_s']:7.2f}x")
        print(f"  ratio pipes/direct       {o['client_pipes_session_s'] / o['direct_python_s']:7.2f}x")
        b = occupancy(args.batch, args.slots, args.sleep, root)
        print(f"batch of {args.batch} x {args.sleep:g} s programs over {args.slots} slots:")
        for key, value in b.items():
            print(f"  {key:24s} {value:7.3f}" if isinstance(value, float) else f"  {key:24s} {value:7d}")
        print(f"  wall / ideal             {b['wall_s'] / b['ideal_wall_s']:7.2f}x")


if __name__ == "__main__":
    main()
