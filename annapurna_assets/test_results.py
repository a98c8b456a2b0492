"""The `test_results` asset: run each new program through the neuron step and keep everything it left."""


import json
import statistics
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from annapurna_assets.partitions import VENUE_YEAR, venue_year
from annapurna_assets.plots import training_curve_png
from annapurna_assets.reporting import markdown_table
from annapurna_resources.index import PaperIndex
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.settings import CODE_BUCKET, RESULTS_BUCKET
from neuron_step.executor import ProgramExecutor
from neuron_step.metrics import all_finite, loss_fell
from neuron_step.types import ProgramJob, ProgramRun

METRICS_FINITE = "metrics_finite"
LOSS_FALLS = "loss_falls"


class TestResultsConfig(dg.Config):
    rerun: bool = False
    max_programs: int | None = None


def run_key(sha256: str, runtime: str) -> str:
    return f"{sha256}|{runtime}"


def store_run(store: ObjectStore, venue: str, year: int, run: ProgramRun, title: str) -> dict[str, str]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    prefix = f"runs/{venue}/{year}/{run.paper_id}/{run.sha256[:12]}-{run.runtime}-{stamp}/"
    artifacts = {
        "stdout": (prefix + "stdout.txt", run.stdout, "text/plain"),
        "stderr": (prefix + "stderr.txt", run.stderr, "text/plain"),
        "metrics": (prefix + "metrics.json", json.dumps(run.metrics, indent=1).encode(), "application/json"),
    }
    png = training_curve_png(run.metrics, title)
    if png:
        artifacts["plot"] = (prefix + "training_curve.png", png, "image/png")
    keys = {}
    for name, (key, data, ctype) in artifacts.items():
        store.put_once(RESULTS_BUCKET, key, data, ctype)
        keys[name] = key
    return keys


def run_record(run: ProgramRun, artifacts: dict[str, str], key: str) -> dict[str, Any]:
    return {"status": run.status, "exit_code": run.exit_code, "wall_s": run.wall_s, "device": run.device,
            "runtime": run.runtime, "slot": run.slot, "final_metrics": run.final_metrics, "error": run.error,
            "metrics_lines": len(run.metrics), "loss_fell": loss_fell(run.metrics), "artifacts": artifacts,
            "protections": run.protections, "pipes_messages": run.pipes_messages, "run_key": key,
            "infrastructure_error": run.infrastructure_error,
            "finished_at": datetime.now(UTC).isoformat()}


@dg.asset(
    partitions_def=VENUE_YEAR,
    group_name="pipeline",
    pool="trainium",
    kinds={"python", "pytorch"},
    description="One row per program run: status, exit code, wall time, device, metrics, artifact keys.",
    check_specs=[
        dg.AssetCheckSpec(METRICS_FINITE, asset="test_results",
                          description="Every passed run reported numeric metrics, all finite."),
        dg.AssetCheckSpec(LOSS_FALLS, asset="test_results",
                          description="The training loss of passed runs went down."),
    ],
)
def test_results(context: dg.AssetExecutionContext, config: TestResultsConfig, executor: ProgramExecutor,
                 index: PaperIndex, store: ObjectStore, generated_code: pd.DataFrame):
    venue, year = venue_year(context)
    programs = generated_code[generated_code["code_status"] == "generated"] if len(generated_code) else generated_code
    docs = index.get_many(programs["paper_id"].tolist()) if len(programs) else {}
    runtime = executor.runtime
    jobs: list[ProgramJob] = []
    for _, p in programs.iterrows():
        doc = docs[p["paper_id"]]
        key = run_key(p["sha256"], runtime)
        done = doc.get("test") or {}
        if not config.rerun and done.get("run_key") == key and not done.get("infrastructure_error"):
            continue
        jobs.append(ProgramJob(paper_id=p["paper_id"], code=store.get_text(CODE_BUCKET, p["code_key"]),
                               sha256=p["sha256"], run_name=f"{p['paper_id']}-{p['sha256'][:12]}",
                               dataset=p.get("dataset") or "synthetic"))
    if config.max_programs is not None:
        jobs = jobs[: config.max_programs]
    context.log.info(f"{venue} {year}: {len(programs)} programs, {len(jobs)} to run on {runtime}")
    for done, run in enumerate(executor.run_programs(context, jobs), 1):
        title = docs[run.paper_id].get("title") or run.paper_id
        artifacts = store_run(store, venue, year, run, title)
        record = run_record(run, artifacts, run_key(run.sha256, run.runtime))
        # Checkpoint each run as it ends.
        index.upsert([{"paper_id": run.paper_id, "test_status": run.status, "test": record}])
        docs[run.paper_id] = {**docs[run.paper_id], "test_status": run.status, "test": record}
        context.log.info(f"[{done}/{len(jobs)}] {run.paper_id}: {run.status} in {run.wall_s:.1f}s on {run.slot}"
                         + (f" ({run.error})" if run.error else ""))
    rows = []
    ran = {j.paper_id for j in jobs}
    for _, p in programs.iterrows():
        t = docs[p["paper_id"]].get("test") or {}
        if not t:
            continue
        rows.append({"paper_id": p["paper_id"], "status": t["status"], "new": p["paper_id"] in ran,
                     "exit_code": t.get("exit_code"), "wall_s": t.get("wall_s"), "device": t.get("device"),
                     "runtime": t.get("runtime"), "metrics": json.dumps(t.get("final_metrics", {})),
                     "loss_fell": t.get("loss_fell"), "error": t.get("error"),
                     "stdout_key": t["artifacts"].get("stdout"), "stderr_key": t["artifacts"].get("stderr"),
                     "metrics_key": t["artifacts"].get("metrics"), "plot_key": t["artifacts"].get("plot")})
    df = pd.DataFrame(rows, columns=["paper_id", "status", "new", "exit_code", "wall_s", "device", "runtime", "metrics",
                                     "loss_fell", "error", "stdout_key", "stderr_key", "metrics_key", "plot_key"])
    passed = df[df["status"] == "passed"]
    walls = [w for w in df["wall_s"].tolist() if w is not None]
    not_finite = [r["paper_id"] for _, r in passed.iterrows() if not all_finite(json.loads(r["metrics"]))]
    loss_up = [r["paper_id"] for _, r in passed.iterrows() if r["loss_fell"] is False]
    metadata: dict[str, Any] = {
        "tested": len(df), "new_runs": len(jobs), "passed": len(passed), "failed": len(df) - len(passed),
        "success_rate": round(len(passed) / len(df), 3) if len(df) else 0.0,
        "median_wall_s": round(statistics.median(walls), 2) if walls else 0.0,
        "runtime": runtime,
        "by_status": dg.MetadataValue.json(df["status"].value_counts().to_dict() if len(df) else {}),
        "results": dg.MetadataValue.md(markdown_table(df, ["paper_id", "status", "wall_s", "metrics", "error"], max_width=120)),
    }
    if len(passed):
        first = passed.iloc[0]
        if first["plot_key"]:
            metadata["example_plot"] = dg.MetadataValue.path(store.uri(RESULTS_BUCKET, first["plot_key"]))
    yield dg.Output(df, metadata=metadata)
    yield dg.AssetCheckResult(check_name=METRICS_FINITE, passed=not not_finite,
                              metadata={"checked": len(passed), "not_finite": dg.MetadataValue.json(not_finite)})
    yield dg.AssetCheckResult(check_name=LOSS_FALLS, passed=not loss_up, severity=dg.AssetCheckSeverity.WARN,
                              metadata={"checked": len(passed), "loss_rose": dg.MetadataValue.json(loss_up)})
