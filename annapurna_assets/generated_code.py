"""The `generated_code` asset: a runnable PyTorch program for each accepted paper, statically
validated and sent back for repair (with its findings) until it passes or the rounds run out."""


import hashlib
import json
import re
from typing import Any

import dagster as dg
import pandas as pd

from annapurna_assets.judgments import paper_for_llm
from annapurna_assets.partitions import VENUE_YEAR, venue_year
from annapurna_assets.program_validation import validate_program
from annapurna_assets.reporting import markdown_table
from annapurna_resources.index import PaperDoc, PaperIndex
from annapurna_resources.llm import LLM, Judgment, LLMUsage, ProgramFeedback
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.settings import CODE_BUCKET

PROGRAMS_VALID = "programs_valid"


class GeneratedCodeConfig(dg.Config):
    max_repair_rounds: int = 2
    regenerate: bool = False


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


def write_validated_program(doc: PaperDoc, llm: LLM, store: ObjectStore, max_rounds: int) -> dict[str, Any]:
    """Generate, validate, repair. Returns the code fields for the index (status generated|invalid|gen_error)."""
    judgment = Judgment.model_validate({k: v for k, v in doc["judgment"].items() if k in Judgment.model_fields})
    paper = paper_for_llm(doc)
    gen_key = generator_key(llm.code_model, llm.code_prompt_version)
    prefix = program_prefix(doc["venue"], doc["year"], doc["paper_id"], gen_key)
    usage = LLMUsage(model=llm.code_model)
    feedback: ProgramFeedback | None = None
    versions: list[str] = []
    findings: list[str] = []
    code = ""
    for round_no in range(max_rounds + 1):
        try:
            draft = llm.write_program(paper, judgment, feedback)
        except Exception as e:
            return {"code_status": "gen_error", "code_gen_key": gen_key,
                    "code": {"error": f"{type(e).__name__}: {e}", "versions": versions, **usage.model_dump()}}
        usage = usage + draft.usage
        code = draft.code
        findings = validate_program(code)
        versions.append(store_version(store, prefix, code, {
            "paper_id": doc["paper_id"], "model": llm.code_model, "prompt_version": llm.code_prompt_version,
            "round": round_no, "findings": findings, **draft.usage.model_dump(exclude={"model"})}))
        if not findings:
            break
        feedback = ProgramFeedback(previous_code=code, findings=findings)
    return {
        "code_status": "generated" if not findings else "invalid",
        "code_gen_key": gen_key,
        "code_key": versions[-1],
        "code_sha256": hashlib.sha256(code.encode("utf-8")).hexdigest(),
        "code": {"model": llm.code_model, "prompt_version": llm.code_prompt_version, "versions": versions,
                 "repair_rounds": len(versions) - 1, "findings": findings, "dataset": judgment.dataset,
                 "task_family": judgment.task_family, **usage.model_dump(exclude={"model"})},
    }


@dg.asset(
    partitions_def=VENUE_YEAR,
    group_name="pipeline",
    pool="llm",
    kinds={"python", "pytorch"},
    description="One row per accepted paper: program key, sha256, dataset, generator, findings, repair rounds, cost.",
    check_specs=[dg.AssetCheckSpec(PROGRAMS_VALID, asset="generated_code",
                                   description="Every generated program parses, loads data with dataset_loader and prints METRICS.")],
)
def generated_code(context: dg.AssetExecutionContext, config: GeneratedCodeConfig, llm: LLM, index: PaperIndex,
                   store: ObjectStore, judgments: pd.DataFrame):
    venue, year = venue_year(context)
    accepted = judgments[judgments["accepted"].astype(bool)]["paper_id"].tolist() if len(judgments) else []
    docs = index.get_many(accepted)
    gen_key = generator_key(llm.code_model, llm.code_prompt_version)
    rows: list[dict[str, Any]] = []
    new, usage_in, usage_out, cost = 0, 0, 0, 0.0
    for pid in accepted:
        doc = docs[pid]
        fresh = config.regenerate or doc.get("code_gen_key") != gen_key or doc.get("code_status") == "gen_error"
        if fresh:
            fields = write_validated_program(doc, llm, store, config.max_repair_rounds)
            index.upsert([{"paper_id": pid, **fields}])
            doc = {**doc, **fields}
            new += 1
            usage_in += fields["code"].get("input_tokens", 0)
            usage_out += fields["code"].get("output_tokens", 0)
            cost += fields["code"].get("cost_usd", 0.0)
        info = doc.get("code") or {}
        rows.append({
            "paper_id": pid, "title": doc.get("title"), "code_status": doc.get("code_status"), "new": fresh,
            "code_key": doc.get("code_key"), "sha256": doc.get("code_sha256"), "dataset": info.get("dataset"),
            "task_family": info.get("task_family"), "generator": gen_key, "model": info.get("model"),
            "findings": json.dumps(info.get("findings", [])), "repair_rounds": info.get("repair_rounds", 0),
            "input_tokens": info.get("input_tokens", 0), "output_tokens": info.get("output_tokens", 0),
            "cost_usd": info.get("cost_usd", 0.0), "error": info.get("error"),
        })
    df = pd.DataFrame(rows, columns=["paper_id", "title", "code_status", "new", "code_key", "sha256", "dataset",
                                     "task_family", "generator", "model", "findings", "repair_rounds",
                                     "input_tokens", "output_tokens", "cost_usd", "error"])
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
        "input_tokens": usage_in,
        "output_tokens": usage_out,
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
