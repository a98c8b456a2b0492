"""The whole graph in process on real local backends, one partition at a time."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from annapurna_resources.settings import CODE_BUCKET, RAW_PAPERS_BUCKET, RESULTS_BUCKET
from annapurna_resources.sources.demo import DemoSource
from tests.pipeline_helpers import make_resources, materialization_metadata, materialize_partition


@pytest.fixture
def resources(tmp_path: Path) -> dict:
    return make_resources(tmp_path)


def test_partition_goes_through_all_four_assets(resources: dict) -> None:
    result = materialize_partition(resources, "iclr", 2015)
    assert result.success
    index, store = resources["index"], resources["store"]
    docs = {d["paper_id"]: d for d in index.iter_docs("iclr", 2015)}
    assert len(docs) == 3
    adam = docs["iclr2015-1412.6980"]
    assert adam["status"] == "ok" and adam["judge_status"] == "judged" and adam["accepted"]
    assert store.exists(RAW_PAPERS_BUCKET, adam["pdf_key"]) and "Stochastic" in store.get_text(RAW_PAPERS_BUCKET, adam["text_key"])
    code = store.get_text(CODE_BUCKET, adam["code_key"])
    assert "from dataset_loader import" in code and adam["code_status"] == "generated"
    assert adam["test_status"] == "passed"
    test = adam["test"]
    metrics = json.loads(store.get(RESULTS_BUCKET, test["artifacts"]["metrics"]))
    assert metrics and metrics[-1]["final"] is True and test["final_metrics"]["loss"] < test["final_metrics"]["initial_loss"]
    assert store.get(RESULTS_BUCKET, test["artifacts"]["plot"]).startswith(b"\x89PNG")
    assert test["pipes_messages"] >= 2  # metrics came back through Dagster Pipes
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"programs_valid": True, "metrics_finite": True, "loss_falls": True}
    meta = materialization_metadata(result, "judgments")
    assert meta["judged"] == 3 and meta["new"] == 3 and meta["model"] == "offline-baseline"


def test_second_run_makes_no_llm_call_and_runs_no_program(resources: dict) -> None:
    assert materialize_partition(resources, "iclr", 2019).success
    first = {d["paper_id"]: d["test"]["finished_at"] for d in resources["index"].iter_docs("iclr", 2019) if d.get("test")}
    again = materialize_partition(resources, "iclr", 2019)
    assert again.success
    assert materialization_metadata(again, "papers")["new_pdfs"] == 0
    assert materialization_metadata(again, "judgments")["new"] == 0
    assert materialization_metadata(again, "generated_code")["new"] == 0
    assert materialization_metadata(again, "test_results")["new_runs"] == 0
    assert {d["paper_id"]: d["test"]["finished_at"] for d in resources["index"].iter_docs("iclr", 2019) if d.get("test")} == first


def test_corrupt_pdf_is_recorded_and_the_partition_goes_on(resources: dict) -> None:
    result = materialize_partition(resources, "icml", 2020)
    assert result.success
    docs = {d["paper_id"]: d for d in resources["index"].iter_docs("icml", 2020)}
    bad = docs["icml2020-2002.04745"]
    assert bad["status"] == "pdf_error" and "pypdf could not read" in bad["error"]
    assert bad["judge_status"] == "skipped"
    assert docs["icml2020-2002.05709"]["judge_status"] == "judged"


def test_missing_abstract_is_recorded(resources: dict) -> None:
    assert materialize_partition(resources, "arxiv", 2016).success
    doc = resources["index"].get("arxiv-1605.07146")
    assert doc["status"] == "no_abstract" and doc["judge_status"] == "skipped" and "no abstract" in doc["error"]


@pytest.mark.parametrize("order", [("neurips", "arxiv"), ("arxiv", "neurips")])
def test_duplicate_across_sources_is_one_paper(resources: dict, order: tuple[str, str]) -> None:
    assets = None
    from annapurna_assets.papers import papers

    assets = [papers]
    for venue in order:
        assert materialize_partition(resources, venue, 2017, assets=assets).success
    index = resources["index"]
    venue_doc, arxiv_doc = index.get("neurips2017-1706.03762"), index.get("arxiv-1706.03762")
    assert venue_doc["status"] == "ok"
    assert arxiv_doc["status"] == "duplicate" and arxiv_doc["duplicate_of"] == "neurips2017-1706.03762"
    assert "arxiv-1706.03762" in venue_doc["aliases"]


def test_uploaded_pdf_without_metadata_enters_the_pipeline(resources: dict) -> None:
    from annapurna_assets.papers import papers
    from annapurna_resources.sources import SourcePaper
    from annapurna_resources.sources.demo import render_paper_pdf

    pdf = render_paper_pdf(SourcePaper(paper_id="x", venue="mlsys", year=2019, title="Dropped Paper About Optimizers",
                                       authors=["A. Person"], abstract="We train networks with a new optimizer.",
                                       source="upload", arxiv_id="0000.00000", url="https://example.org"))
    resources["store"].put_once(RAW_PAPERS_BUCKET, "papers/mlsys/2019/my-upload.pdf", pdf)
    assert materialize_partition(resources, "mlsys", 2019, assets=[papers]).success
    doc = resources["index"].get("my-upload")
    assert doc["source"] == "upload" and doc["title"] == "Dropped Paper About Optimizers"
    assert doc["abstract"] == "We train networks with a new optimizer." and doc["status"] == "ok"


def test_ui_instance_records_the_run(resources: dict) -> None:
    with dg.instance_for_test() as instance:
        result = materialize_partition(resources, "neurips", 2022, instance=instance)
        assert result.success
        mats = instance.fetch_materializations(dg.AssetKey("test_results"), limit=5).records
        assert mats and mats[0].partition_key == "neurips|2022"


class _FlakySource(DemoSource):
    """The demo corpus, but the listing breaks after the first paper, and remembers what it was asked."""

    def fetch_papers(self, venue, year, options):  # type: ignore[no-untyped-def]
        _FlakySource.asked.append(options)
        for i, paper in enumerate(super().fetch_papers(venue, year, options)):
            if i == 1 and _FlakySource.fail:
                raise ConnectionError("503 from the source")
            yield paper


_FlakySource.asked = []
_FlakySource.fail = True


def test_listing_that_fails_halfway_keeps_what_it_got(tmp_path: Path) -> None:
    from annapurna_assets.papers import papers

    resources = make_resources(tmp_path, sources=_FlakySource())
    result = materialize_partition(resources, "iclr", 2015, assets=[papers])
    assert result.success
    assert [d["paper_id"] for d in resources["index"].iter_docs("iclr", 2015)] == ["iclr2015-1412.6980"]
    meta = materialization_metadata(result, "papers")
    assert "503 from the source" in meta["listing_error"]


def test_incremental_run_asks_only_for_newer_papers_and_keeps_the_whole_partition(tmp_path: Path) -> None:
    from annapurna_assets.papers import papers

    _FlakySource.fail, _FlakySource.asked = False, []
    resources = make_resources(tmp_path, sources=_FlakySource())
    assert materialize_partition(resources, "iclr", 2015, assets=[papers]).success
    result = dg.materialize([papers], partition_key="iclr|2015", resources=resources,
                           run_config={"ops": {"papers": {"config": {"incremental": True}}}})
    assert result.success
    assert _FlakySource.asked[0].since is None and _FlakySource.asked[1].since == "2014-12-22"
    assert len(result.output_for_node("papers")) == 3


def test_pdf_with_metadata_from_another_scraper_enters_with_that_metadata(resources: dict) -> None:
    from annapurna_assets.papers import metadata_json, papers
    from annapurna_resources.sources import SourcePaper
    from annapurna_resources.sources.demo import render_paper_pdf

    paper = SourcePaper(paper_id="other-scraper-1", venue="mlsys", year=2019, title="Pipelined Training at Scale Made Simple",
                        authors=["B. Author"], abstract="A training technique for pipelines of layers.", source="other")
    store = resources["store"]
    store.put_once(RAW_PAPERS_BUCKET, "papers/mlsys/2019/other-scraper-1.pdf", render_paper_pdf(paper))
    store.put_once(RAW_PAPERS_BUCKET, "papers/mlsys/2019/other-scraper-1.json", metadata_json(paper))
    result = materialize_partition(resources, "mlsys", 2019, assets=[papers])
    assert result.success
    doc = resources["index"].get("other-scraper-1")
    assert doc["source"] == "other" and doc["authors"] == ["B. Author"] and doc["status"] == "ok"
    assert "other-scraper-1" in result.output_for_node("papers")["paper_id"].tolist()


def test_a_run_lost_to_the_transport_is_run_again_next_time(tmp_path: Path) -> None:
    from neuron_step.pipes_client import NeuronPipesClient
    from neuron_step.types import ProgramRun

    class HostDownOnce(NeuronPipesClient):
        def run_programs(self, context, jobs):  # type: ignore[no-untyped-def]
            if not HostDownOnce.failed:
                HostDownOnce.failed = True
                for j in jobs:
                    yield ProgramRun(paper_id=j.paper_id, sha256=j.sha256, status="failed", exit_code=None, wall_s=0.0,
                                     device="cpu", runtime=self.runtime, metrics=[], stdout=b"", stderr=b"",
                                     error="ssm transport: instance unreachable", infrastructure_error=True)
                return
            yield from super().run_programs(context, jobs)

    HostDownOnce.failed = False
    resources = make_resources(tmp_path)
    resources["executor"] = HostDownOnce(slots=2, time_budget_s=6, timeout_s=120, work_root=str(tmp_path / "jobs"))
    assert materialize_partition(resources, "iclr", 2021).success
    doc = resources["index"].get("iclr2021-2010.11929")
    assert doc["test_status"] == "failed" and doc["test"]["infrastructure_error"]
    again = materialize_partition(resources, "iclr", 2021)
    assert materialization_metadata(again, "test_results")["new_runs"] >= 1
    assert resources["index"].get("iclr2021-2010.11929")["test_status"] == "passed"
