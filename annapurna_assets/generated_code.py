"""The `generated_code` asset: a runnable PyTorch program for each accepted paper, statically
validated and sent back for repair (with its findings) until it passes or the rounds run out; with
an LLM, also smoke-run here before it is accepted, and sent back with the error tail of a crash
(in the smoke run, or later in test_results)."""


import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from annapurna_assets.generate_actions import GenerateRequest, paper_info, select_papers
from annapurna_assets.judgments import paper_for_llm
from annapurna_assets.partitions import VENUE_YEAR, venue_year
from annapurna_assets.program_validation import program_warnings, validate_program
from annapurna_assets.reporting import markdown_table
from annapurna_assets.smoke_run import SmokeResult, smoke_run
from annapurna_resources.index import PaperDoc, PaperIndex
from annapurna_resources.llm import LLM, Judgment, LLMUsage, ProgramFeedback
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.settings import CODE_BUCKET, RESULTS_BUCKET

PROGRAMS_VALID = "programs_valid"


SmokeRunner = Callable[[str, str], SmokeResult]
# The offline baseline's templates are known to run; a smoke run of each would only cost time.
OFFLINE_MODEL = "offline-baseline"
ERROR_TAIL_CHARS = 4000


class GeneratedCodeConfig(dg.Config):
    max_repair_rounds: int = 2
    regenerate: bool = False
    # A short local run before a program is accepted; None: on for an LLM, off for the offline baseline.
    smoke_run: bool | None = None
    smoke_time_budget_s: float = 15.0
    smoke_timeout_s: float = 180.0
    max_run_repair_rounds: int = 2
    # Send a program that failed in test_results back with its error tail (at most
    # max_run_repair_rounds times per paper); None: on for an LLM, off for the offline baseline.
    repair_failed_runs: bool | None = None
    # A generate action (generate_actions.py) picks papers beyond (or, for get_paper_info, instead
    # of) the accepted ones; none: every accepted paper of the partition.
    action: str | None = None
    paper_id: str | None = None
    paper_ids: list[str] = []
    title: str | None = None
    author: str | None = None
    keywords: list[str] = []
    recent: int = 0
    max_papers: int = 10

    def generate_request(self) -> GenerateRequest | None:
        if not self.action:
            return None
        return GenerateRequest.model_validate({k: v for k, v in self.model_dump().items()
                                               if k in GenerateRequest.model_fields})


def generator_key(model: str, prompt_version: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', model)}-{prompt_version}"


def program_prefix(venue: str, year: int, paper_id: str, gen_key: str) -> str:
    return f"programs/{venue}/{year}/{paper_id}/{gen_key}/"


def store_version(store: ObjectStore, prefix: str, code: str, meta: dict[str, Any]) -> str:
    """Keep every version: v1.py, v2.py, ... never overwritten; the same code twice is one version."""
    data = code.encode("utf-8")
    existing = sorted(k for k in store.list_keys(CODE_BUCKET, prefix) if re.search(r"/v\d+\.py$", k))
    for key in existing:
        if store.get(CODE_BUCKET, key) == data:
            return key
    n = 1 + max((int(re.search(r"/v(\d+)\.py$", k).group(1)) for k in existing), default=0)  # type: ignore[union-attr]
    key = f"{prefix}v{n}.py"
    store.put_once(CODE_BUCKET, key, data, "text/x-python")
    store.put_once(CODE_BUCKET, f"{prefix}v{n}.json", json.dumps(meta, indent=1, default=str).encode(), "application/json")
    return key


def write_validated_program(doc: PaperDoc, llm: LLM, store: ObjectStore, max_rounds: int,
                            smoke: SmokeRunner | None = None, max_run_rounds: int = 2,
                            feedback: ProgramFeedback | None = None) -> dict[str, Any]:
    """Generate, validate, smoke-run, repair. Returns the code fields for the index (status
    generated|invalid|gen_error).

    Static findings go back to the LLM for up to `max_rounds` fixed versions; a program that passes
    them but crashes in the smoke run (when `smoke` is given) goes back with its error tail for up to
    `max_run_rounds` more. `feedback` starts from a failed program (a run in test_results) instead
    of from scratch. Every version is stored; none is overwritten."""
    judgment = Judgment.model_validate({k: v for k, v in doc["judgment"].items() if k in Judgment.model_fields})
    paper = paper_for_llm(doc)
    gen_key = generator_key(llm.code_model, llm.code_prompt_version)
    prefix = program_prefix(doc["venue"], doc["year"], doc["paper_id"], gen_key)
    usage = LLMUsage(model=llm.code_model)
    versions: list[str] = []
    if feedback is not None:  # a repair continues the paper's record: its versions and what they cost
        previous = doc.get("code") or {}
        versions = list(previous.get("versions") or [])
        usage = LLMUsage.model_validate({**{k: v for k, v in previous.items() if k in LLMUsage.model_fields},
                                         "model": llm.code_model})
    findings: list[str] = []
    smoked: SmokeResult | None = None
    static_rounds = run_rounds = 0
    code = ""
    for round_no in range(max_rounds + max_run_rounds + 1):
        try:
            draft = llm.write_program(paper, judgment, feedback)
        except Exception as e:
            return {"code_status": "gen_error", "code_gen_key": gen_key,
                    "code": {"error": f"{type(e).__name__}: {e}", "versions": versions, **usage.model_dump()}}
        usage = usage + draft.usage
        code = draft.code
        findings = validate_program(code)
        warnings = program_warnings(code)
        smoked = smoke(code, doc["paper_id"]) if smoke is not None and not findings else None
        versions.append(store_version(store, prefix, code, {
            "paper_id": doc["paper_id"], "model": llm.code_model, "prompt_version": llm.code_prompt_version,
            "round": round_no, "findings": findings, "warnings": warnings,
            "smoke": smoked.as_meta() if smoked else None, **draft.usage.model_dump(exclude={"model"})}))
        if findings and static_rounds < max_rounds:
            static_rounds += 1
            feedback = ProgramFeedback(previous_code=code, findings=findings + warnings)
        elif smoked is not None and smoked.status == "failed" and run_rounds < max_run_rounds:
            run_rounds += 1
            feedback = ProgramFeedback(previous_code=code, findings=[f"its smoke run failed: {smoked.detail}", *warnings],
                                       error_tail=smoked.error_tail)
        else:
            break
    if not findings and smoked is not None and smoked.status == "failed":
        findings = [f"its smoke run failed: {smoked.detail}"]
    return {
        "code_status": "generated" if not findings else "invalid",
        "code_gen_key": gen_key,
        "code_key": versions[-1],
        "code_sha256": hashlib.sha256(code.encode("utf-8")).hexdigest(),
        "code": {"model": llm.code_model, "prompt_version": llm.code_prompt_version, "versions": versions,
                 "repair_rounds": len(versions) - 1, "run_repair_rounds": run_rounds, "findings": findings,
                 "smoke": smoked.as_meta() if smoked else None, "dataset": judgment.dataset,
                 "task_family": judgment.task_family, **usage.model_dump(exclude={"model"})},
    }


def failed_test_feedback(doc: PaperDoc, store: ObjectStore, max_repairs: int) -> ProgramFeedback | None:
    """Feedback for a program whose latest test_results run crashed (the run of exactly the current
    program, with repairs left); None when there is nothing to repair."""
    test = doc.get("test") or {}
    if doc.get("code_status") != "generated" or test.get("status") != "failed" or not doc.get("code_sha256"):
        return None
    if not str(test.get("run_key", "")).startswith(doc["code_sha256"]):
        return None  # the failed run was of an older version
    if (doc.get("code") or {}).get("test_repair_rounds", 0) >= max_repairs:
        return None
    tail = ""
    stderr_key = (test.get("artifacts") or {}).get("stderr")
    if stderr_key:
        try:
            tail = store.get_text(RESULTS_BUCKET, stderr_key)[-ERROR_TAIL_CHARS:]
        except KeyError:
            tail = ""
    return ProgramFeedback(previous_code=store.get_text(CODE_BUCKET, doc["code_key"]),
                           findings=[f"its run on {test.get('runtime', 'the test host')} failed: {test.get('error')}"],
                           error_tail=tail)


@dg.asset(
    partitions_def=VENUE_YEAR,
    group_name="pipeline",
    pool="llm",
    kinds={"python", "pytorch"},
    description="One row per accepted paper: program key, sha256, dataset, generator, findings, repair rounds, cost.",
    check_specs=[dg.AssetCheckSpec(PROGRAMS_VALID, asset="generated_code",
                                   description="Every generated program parses, names nothing undefined, imports only what the host has, loads data with dataset_loader, prints METRICS, reads its time budget and keeps the XLA rules.")],
)
def generated_code(context: dg.AssetExecutionContext, config: GeneratedCodeConfig, llm: LLM, index: PaperIndex,
                   store: ObjectStore, judgments: pd.DataFrame):
    venue, year = venue_year(context)
    accepted = judgments[judgments["accepted"].astype(bool)]["paper_id"].tolist() if len(judgments) else []
    request = config.generate_request()
    picked: list[str] = []
    if request is not None:
        here = [d for d in select_papers(index, request) if d.get("venue") == venue and int(d.get("year") or 0) == year]
        for d in here:
            if request.action == "get_paper_info":
                context.log.info(json.dumps(paper_info(d), default=str))
            elif d.get("judge_status") != "judged":
                context.log.warning(f"{d['paper_id']}: not judged yet ({d.get('judge_status')}); no program written")
            else:
                picked.append(d["paper_id"])
        accepted = accepted + [pid for pid in picked if pid not in accepted]
    docs = index.get_many(accepted)
    gen_key = generator_key(llm.code_model, llm.code_prompt_version)
    smoke_on = config.smoke_run if config.smoke_run is not None else llm.code_model != OFFLINE_MODEL
    smoke: SmokeRunner | None = None
    if smoke_on:
        def smoke(code: str, paper_id: str) -> SmokeResult:
            return smoke_run(code, paper_id, config.smoke_time_budget_s, config.smoke_timeout_s)
    repair_runs = config.repair_failed_runs if config.repair_failed_runs is not None else llm.code_model != OFFLINE_MODEL
    rows: list[dict[str, Any]] = []
    new, usage_in, usage_out, cost = 0, 0, 0, 0.0
    cache_read = cache_write = 0
    for pid in accepted:
        doc = docs[pid]
        fresh = config.regenerate or doc.get("code_gen_key") != gen_key or doc.get("code_status") == "gen_error"
        # With an action only the picked papers get new work (get_paper_info picks none); the other
        # accepted papers keep their rows as they are, so the partition's output stays whole.
        fresh = fresh and (request is None or pid in picked)
        failed_run = None if fresh or not repair_runs else failed_test_feedback(doc, store, config.max_run_repair_rounds)
        if fresh or failed_run is not None:
            fields = write_validated_program(doc, llm, store, config.max_repair_rounds, smoke,
                                             config.max_run_repair_rounds, failed_run)
            # A repair's record carries the paper's earlier spend too; this run's metadata counts the new part.
            before = (doc.get("code") or {}) if failed_run is not None else {}
            if failed_run is not None:
                fields["code"]["test_repair_rounds"] = before.get("test_repair_rounds", 0) + 1
                fresh = True
            index.upsert([{"paper_id": pid, **fields}])
            doc = {**doc, **fields}
            new += 1
            spent = {k: fields["code"].get(k, 0) - before.get(k, 0)
                     for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")}
            usage_in += spent["input_tokens"]
            usage_out += spent["output_tokens"]
            cache_read += spent["cache_read_tokens"]
            cache_write += spent["cache_write_tokens"]
            cost += spent["cost_usd"]
        info = doc.get("code") or {}
        rows.append({
            "paper_id": pid, "title": doc.get("title"), "code_status": doc.get("code_status"), "new": fresh,
            "code_key": doc.get("code_key"), "sha256": doc.get("code_sha256"), "dataset": info.get("dataset"),
            "task_family": info.get("task_family"), "generator": gen_key, "model": info.get("model"),
            "findings": json.dumps(info.get("findings", [])), "repair_rounds": info.get("repair_rounds", 0),
            "input_tokens": info.get("input_tokens", 0), "output_tokens": info.get("output_tokens", 0),
            "cost_usd": info.get("cost_usd", 0.0), "error": info.get("error"),
            "smoke": (info.get("smoke") or {}).get("status"), "run_repair_rounds": info.get("run_repair_rounds", 0),
        })
    df = pd.DataFrame(rows, columns=["paper_id", "title", "code_status", "new", "code_key", "sha256", "dataset",
                                     "task_family", "generator", "model", "findings", "repair_rounds",
                                     "input_tokens", "output_tokens", "cost_usd", "error", "smoke",
                                     "run_repair_rounds"])
    generated = df[df["code_status"] == "generated"]
    # The check reads the stored bytes again: what will run is what is checked.
    problems = {}
    for _, r in generated.iterrows():
        found = validate_program(store.get_text(CODE_BUCKET, r["code_key"]))
        if found:
            problems[r["paper_id"]] = found
    invalid = df[df["code_status"] != "generated"]["paper_id"].tolist()
    context.log.info(f"{venue} {year}: {len(generated)} programs ({new} new), {len(invalid)} invalid or failed")
    yield dg.Output(df, metadata={
        "programs": len(generated),
        "new": new,
        "invalid": len(invalid),
        "repair_rounds": int(df["repair_rounds"].sum()) if len(df) else 0,
        "run_repair_rounds": int(df["run_repair_rounds"].sum()) if len(df) else 0,
        "smoke_runs": int(df["smoke"].notna().sum()) if len(df) else 0,
        "input_tokens": usage_in,
        "output_tokens": usage_out,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cost_usd": round(cost, 6),
        "generator": gen_key,
        "code_store": dg.MetadataValue.path(store.uri(CODE_BUCKET, f"programs/{venue}/{year}/")) if len(df) else "",
        "preview": dg.MetadataValue.md(markdown_table(df, ["paper_id", "code_status", "dataset", "repair_rounds", "code_key"])),
    })
    yield dg.AssetCheckResult(
        check_name=PROGRAMS_VALID,
        passed=not problems and not invalid,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"checked": len(generated), "invalid_papers": dg.MetadataValue.json(invalid),
                  "findings": dg.MetadataValue.json(problems)},
    )
