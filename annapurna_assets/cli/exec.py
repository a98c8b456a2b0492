"""`annapurna exec PROGRAM.py [--timeout S] [--json]`: run one program through the runner and sandbox
the pipeline uses (the local transport of the Pipes client) and print how it ended:
`{status, exit_code, wall_s, metrics, stdout_tail, stderr_tail, artifacts}`.

Artifacts (files the program left in its folder, and the training curve drawn from its METRICS
lines) are copied to `--artifacts DIR` (default `./annapurna-exec-<sha12>/`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TAIL_CHARS = 4000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("exec", help="run one program in the sandbox, as the pipeline would")
    p.add_argument("program", help="a Python file that prints METRICS: {json} lines")
    p.add_argument("--timeout", type=float, default=None,
                   help="wall-time limit in seconds (default: TRAINIUM_TIMEOUT / MAX_EXECUTION_TIME, else 1800)")
    p.add_argument("--budget", type=float, default=None,
                   help="training time budget given to the program (ANNAPURNA_TIME_BUDGET_S; default 80%% of the limit)")
    p.add_argument("--dataset", default="synthetic", help="dataset the program uses (staged before it starts)")
    p.add_argument("--memory-gb", type=float, default=8.0)
    p.add_argument("--artifacts", default=None, help="where to copy artifacts (default ./annapurna-exec-<sha12>)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def default_timeout() -> float:
    for name in ("TRAINIUM_TIMEOUT", "MAX_EXECUTION_TIME"):
        value = os.environ.get(name, "").strip()
        if value:
            return float(value)
    return 1800.0


def tail(data: bytes, chars: int = TAIL_CHARS) -> str:
    return data.decode("utf-8", "replace")[-chars:]


def collect_artifacts(job_dirs: list[Path], dest: Path, metrics: list[dict[str, Any]], title: str) -> list[str]:
    """Files the program wrote (not the ones we put there; no links), plus the training curve."""
    from neuron_step.pipes_client import RUNTIME_FILES
    from neuron_step.transports import collect_output_files

    ours = {"program.py", "pipes.jsonl", *RUNTIME_FILES}
    written: list[str] = []
    for job_dir in job_dirs:
        for name, data in collect_output_files(job_dir, ours).items():
            target = (dest / name).resolve()
            if dest.resolve() not in target.parents:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(str(target))
    from annapurna_assets.plots import training_curve_png

    png = training_curve_png(metrics, title)
    if png:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "training_curve.png").write_bytes(png)
        written.append(str(dest / "training_curve.png"))
    return written


def execute(program: Path, timeout_s: float, budget_s: float | None, dataset: str, memory_gb: float,
            artifacts_dir: Path | None) -> dict[str, Any]:
    from neuron_step.pipes_client import NeuronPipesClient, job_for_code

    code = program.read_text(encoding="utf-8", errors="replace")
    job = job_for_code(code, paper_id="exec", dataset=dataset, timeout_s=timeout_s)
    budget = budget_s if budget_s is not None else max(1.0, 0.8 * timeout_s)
    dest = artifacts_dir or Path.cwd() / f"annapurna-exec-{job.sha256[:12]}"
    work_root = Path(tempfile.mkdtemp(prefix="annapurna-exec-"))
    try:
        client = NeuronPipesClient(transport="local", slots=1, timeout_s=timeout_s, time_budget_s=budget,
                                   memory_limit_gb=memory_gb, work_root=str(work_root), keep_job_dirs=True,
                                   dataset_cache_dir=os.environ.get("DATASET_CACHE_DIR"),
                                   dataset_store_uri=os.environ.get("DATASET_STORE_URI"))
        run = client.run_one(None, job, slot=0)
        artifacts = collect_artifacts([p for p in work_root.iterdir() if p.is_dir()], dest, run.metrics, program.name)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    return {"status": run.status, "exit_code": run.exit_code, "wall_s": run.wall_s, "metrics": run.metrics,
            "stdout_tail": tail(run.stdout), "stderr_tail": tail(run.stderr), "artifacts": artifacts,
            "error": run.error, "device": run.device, "protections": run.protections,
            "stdout_bytes": len(run.stdout), "stderr_bytes": len(run.stderr)}


def run(args: argparse.Namespace) -> int:
    program = Path(args.program)
    if not program.is_file():
        print(f"no such program: {program}")
        return 2
    timeout = args.timeout if args.timeout is not None else default_timeout()
    result = execute(program, timeout, args.budget, args.dataset, args.memory_gb,
                     Path(args.artifacts) if args.artifacts else None)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['status']} (exit code {result['exit_code']}) in {result['wall_s']:.1f} s on {result['device']}")
        if result["error"]:
            print(f"error: {result['error']}")
        if result["metrics"]:
            print(f"final metrics: {json.dumps(result['metrics'][-1])}")
        for path in result["artifacts"]:
            print(f"artifact: {path}")
        print(f"protections: {', '.join(result['protections'])}")
    return 0 if result["status"] == "passed" else 1
