"""The offline baseline judges by the research focus and writes programs that really train."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from annapurna_assets.program_validation import validate_program
from annapurna_resources.llm import Judgment, PaperForLLM
from annapurna_resources.llm.offline import OfflineLLM, classify_task_family, cosine_similarity
from annapurna_resources.llm.offline_templates import render_program
from annapurna_resources.sources.demo import load_corpus
from neuron_step.pipes_client import NeuronPipesClient
from neuron_step.types import ProgramJob

FAMILIES = {"image_classification": "cifar10", "optimizer": "fashion_mnist", "text_classification": "imdb",
            "language_modeling": "wikitext2", "other": "synthetic"}


def corpus_paper(arxiv_id: str) -> PaperForLLM:
    p = next(p for p in load_corpus() if p["arxiv_id"] == arxiv_id)
    return PaperForLLM(paper_id=p["paper_id"], title=p["title"], abstract=p["abstract"], authors=p["authors"],
                       venue=p["venue"], year=p["year"])


def test_judge_accepts_a_small_scale_method_and_rejects_a_scale_result() -> None:
    llm = OfflineLLM()
    adam = llm.judge_paper(corpus_paper("1412.6980"), [], "")
    gpt3 = llm.judge_paper(corpus_paper("2005.14165"), [], "")
    assert adam.status == "judged" and adam.judgment.relevant and adam.judgment.task_family == "optimizer"
    assert not gpt3.judgment.relevant and "billion" in gpt3.judgment.reasons
    assert adam.usage.model == "offline-baseline" and adam.usage.cost_usd == 0


def test_novelty_falls_when_a_similar_paper_is_indexed() -> None:
    llm = OfflineLLM()
    layernorm, batchnorm = corpus_paper("1607.06450"), corpus_paper("1502.03167")
    alone = llm.judge_paper(layernorm, [], "").judgment
    near = llm.judge_paper(layernorm, [batchnorm], "").judgment
    assert alone.novelty == 1.0 and near.novelty < alone.novelty
    assert "Batch Normalization" in near.reasons
    assert cosine_similarity("adam layer norm", "adam layer norm") == pytest.approx(1.0) and cosine_similarity("", "x") == 0.0


def test_task_family_by_keywords() -> None:
    assert classify_task_family(corpus_paper("1706.03762")) == "language_modeling"
    assert classify_task_family(corpus_paper("1409.1556")) == "image_classification"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_template_passes_static_validation(family: str) -> None:
    code = render_program(PaperForLLM(paper_id="p", title='A "quoted" title """ with \\ backslash', venue="iclr", year=2020),
                          Judgment(relevant=True, relevance=1, novelty=1, task_family=family, dataset=FAMILIES[family], reasons="r"))
    assert validate_program(code) == []
    compile(code, "program.py", "exec")


def test_every_template_trains_and_its_loss_falls(tmp_path: Path) -> None:
    jobs = []
    for family, dataset in FAMILIES.items():
        code = render_program(PaperForLLM(paper_id=family, title=family, venue="iclr", year=2020),
                              Judgment(relevant=True, relevance=1, novelty=1, task_family=family, dataset=dataset, reasons="r"))
        jobs.append(ProgramJob(paper_id=family, code=code, sha256=hashlib.sha256(code.encode()).hexdigest(), run_name=family))
    client = NeuronPipesClient(slots=2, time_budget_s=4, timeout_s=120, work_root=str(tmp_path))
    runs = {r.paper_id: r for r in client.run_programs(None, jobs)}
    for family, run in runs.items():
        assert run.status == "passed", (family, run.error, run.stderr[-500:])
        final = run.final_metrics
        assert final["final"] is True and final["loss"] < final["initial_loss"], family
        assert final["dataset"].startswith("synthetic"), family  # the standard datasets are not staged here
