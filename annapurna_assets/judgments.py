"""The `judgments` asset: the LLM judges each paper's relevance and novelty; accepted ones go on."""


import hashlib
from typing import Any

import dagster as dg
import pandas as pd

from annapurna_assets.partitions import VENUE_YEAR, venue_year
from annapurna_assets.reporting import markdown_table
from annapurna_resources.index import PaperDoc, PaperIndex
from annapurna_resources.llm import DEFAULT_RESEARCH_FOCUS, LLM, JudgeResult, LLMUsage, PaperForLLM
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.settings import RAW_PAPERS_BUCKET

TEXT_EXCERPT_CHARS = 4000


class JudgmentsConfig(dg.Config):
    research_focus: str = DEFAULT_RESEARCH_FOCUS
    min_score: float = 0.45
    similar_papers: int = 5
    retry_errors: bool = False


def judge_key(content_hash: str, prompt_version: str, model: str) -> str:
    return hashlib.sha256(f"{content_hash}|{prompt_version}|{model}".encode()).hexdigest()[:24]


def overall_score(relevance: float, novelty: float) -> float:
    return round(0.7 * relevance + 0.3 * novelty, 4)


def paper_for_llm(doc: PaperDoc, text: str = "") -> PaperForLLM:
    return PaperForLLM(paper_id=doc["paper_id"], title=doc.get("title") or "", authors=list(doc.get("authors") or []),
                       abstract=doc.get("abstract") or "", text_excerpt=text[:TEXT_EXCERPT_CHARS],
                       venue=doc.get("venue") or "", year=int(doc.get("year") or 0))


def judge_one(doc: PaperDoc, llm: LLM, index: PaperIndex, store: ObjectStore, config: JudgmentsConfig) -> JudgeResult:
    text = ""
    if doc.get("text_key"):
        try:
            text = store.get_text(RAW_PAPERS_BUCKET, doc["text_key"])[:TEXT_EXCERPT_CHARS]
        except KeyError:
            pass
    exclude = [doc["paper_id"], *doc.get("aliases", [])]
    similar = index.similar(f"{doc.get('title', '')} {doc.get('abstract', '')}", limit=config.similar_papers,
                            exclude=exclude, max_year=doc.get("year"))
    try:
        return llm.judge_paper(paper_for_llm(doc, text), [paper_for_llm(s) for s in similar], config.research_focus)
    except Exception as e:  # an LLM backend failure ends this paper, not the partition
        return JudgeResult(status="judge_error", error=f"{type(e).__name__}: {e}", usage=LLMUsage(model=llm.judge_model))


@dg.asset(
    partitions_def=VENUE_YEAR,
    group_name="pipeline",
    pool="llm",
    kinds={"python", "claude"},
    description="One row per paper: relevant, novelty, score, reasons, model, prompt version, tokens, cost.",
)
def judgments(context: dg.AssetExecutionContext, config: JudgmentsConfig, llm: LLM, index: PaperIndex,
              store: ObjectStore, papers: pd.DataFrame) -> pd.DataFrame:
    venue, year = venue_year(context)
    docs = index.get_many(papers["paper_id"].tolist()) if len(papers) else {}
    rows: list[dict[str, Any]] = []
    usage = LLMUsage(model=llm.judge_model)
    new = 0
    for i, pid in enumerate(papers["paper_id"].tolist() if len(papers) else [], 1):
        doc = docs.get(pid) or {"paper_id": pid}
        row: dict[str, Any] = {"paper_id": pid, "title": doc.get("title"), "judge_status": None, "new": False,
                               "relevant": None, "relevance": None, "novelty": None, "score": None,
                               "accepted": False, "task_family": None, "dataset": None, "reasons": None,
                               "model": llm.judge_model, "prompt_version": llm.judge_prompt_version,
                               "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "error": None}
        if doc.get("status", "ok") != "ok":
            row.update(judge_status="skipped", error=f"paper status {doc.get('status')}: {doc.get('error')}")
            index.upsert([{"paper_id": pid, "judge_status": "skipped", "accepted": False}])
            rows.append(row)
            continue
        key = judge_key(doc.get("content_hash") or "", llm.judge_prompt_version, llm.judge_model)
        stored = doc.get("judgment") if doc.get("judge_key") == key else None
        if stored is None or (stored.get("status") == "judge_error" and config.retry_errors):
            result = judge_one(doc, llm, index, store, config)
            usage = usage + result.usage
            new += 1
            stored = {"status": result.status, "error": result.error, "model": llm.judge_model,
                      "prompt_version": llm.judge_prompt_version, **result.usage.model_dump(exclude={"model"}),
                      **(result.judgment.model_dump() if result.judgment else {})}
            row["new"] = True
        judged = stored["status"] == "judged"
        score = overall_score(stored["relevance"], stored["novelty"]) if judged else None
        accepted = bool(judged and stored["relevant"] and score is not None and score >= config.min_score)
        row.update(judge_status=stored["status"], error=stored.get("error"), score=score, accepted=accepted,
                   input_tokens=stored.get("input_tokens", 0), output_tokens=stored.get("output_tokens", 0),
                   cost_usd=stored.get("cost_usd", 0.0),
                   **{k: stored.get(k) for k in ("relevant", "relevance", "novelty", "task_family", "dataset", "reasons")})
        # Checkpoint per paper: a run that dies later loses nothing already paid for.
        index.upsert([{"paper_id": pid, "judge_status": stored["status"], "judge_key": key, "judgment": stored,
                       "relevant": stored.get("relevant"), "accepted": accepted, "score": score}])
        rows.append(row)
        if i % 10 == 0:
            context.log.info(f"{i}/{len(papers)} judged ({new} new, {usage.input_tokens + usage.output_tokens} tokens)")
    df = pd.DataFrame(rows)
    judged_rows = df[df["judge_status"] == "judged"] if len(df) else df
    context.log.info(f"{venue} {year}: {len(judged_rows)} judged, {new} new LLM calls, "
                     f"{int(df['accepted'].sum()) if len(df) else 0} accepted, ${usage.cost_usd:.4f}")
    context.add_output_metadata({
        "judged": len(judged_rows),
        "new": new,
        "accepted": int(df["accepted"].sum()) if len(df) else 0,
        "acceptance_rate": round(float(df["accepted"].sum()) / len(judged_rows), 3) if len(judged_rows) else 0.0,
        "judge_errors": int((df["judge_status"] == "judge_error").sum()) if len(df) else 0,
        "skipped": int((df["judge_status"] == "skipped").sum()) if len(df) else 0,
        "model": llm.judge_model,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": round(usage.cost_usd, 6),
        "llm_seconds": round(usage.seconds, 3),
        "preview": dg.MetadataValue.md(markdown_table(df, ["paper_id", "judge_status", "score", "accepted", "task_family", "reasons"])),
    })
    return df
