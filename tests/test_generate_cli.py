"""The generate actions (selection, run config of generated_code) and `annapurna generate | info |
download code`, on the offline baseline; plus the smoke run that gates Claude's programs."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import dagster as dg
import pytest

from annapurna_assets.generate_actions import GenerateRequest, select_papers
from annapurna_assets.smoke_run import smoke_run
from annapurna_resources.settings import CODE_BUCKET

ADAM, VGG = "iclr2015-1412.6980", "iclr2015-1409.1556"


def cli(*argv: str) -> tuple[int, str]:
    from annapurna_assets.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture
def judged_home(annapurna_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """iclr|2015 scraped and judged (no programs yet) by the offline baseline, as the CLI sees it."""
    monkeypatch.setenv("ANNAPURNA_LLM", "offline")
    from annapurna_assets.definitions import PIPELINE_ASSETS
    from annapurna_assets.partitions import partition_key
    from annapurna_assets.resources import build_resources

    resources = build_resources()
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(PIPELINE_ASSETS, partition_key=partition_key("iclr", 2015), resources=resources,
                                instance=instance, selection=["papers", "judgments"])
    assert result.success
    return resources


def test_requests_from_queue_messages_and_their_validation() -> None:
    r = GenerateRequest.from_message({"action": "generate_by_keywords", "keywords": "adam, optimizer", "max_papers": 2})
    assert r.keywords == ["adam", "optimizer"] and r.max_papers == 2
    assert GenerateRequest.from_message({"action": "generate_recent", "max_papers": 3}).recent == 3
    with pytest.raises(ValueError, match="needs its argument"):
        GenerateRequest(action="generate_by_title")
    with pytest.raises(ValueError):
        GenerateRequest(action="delete_everything", title="x")  # type: ignore[arg-type]


def test_select_papers_for_each_action(judged_home: dict) -> None:
    index = judged_home["index"]
    assert [d["paper_id"] for d in select_papers(index, GenerateRequest(action="generate_by_id", paper_id=ADAM))] == [ADAM]
    ids = [d["paper_id"] for d in select_papers(index, GenerateRequest(action="generate_by_ids", paper_ids=[VGG, ADAM, "nope"]))]
    assert ids == [VGG, ADAM]
    by_title = select_papers(index, GenerateRequest(action="generate_by_title", title="Very Deep Convolutional Networks", max_papers=1))
    assert [d["paper_id"] for d in by_title] == [VGG]
    by_author = select_papers(index, GenerateRequest(action="generate_by_author", author="Kingma"))
    assert ADAM in [d["paper_id"] for d in by_author]
    assert len(select_papers(index, GenerateRequest(action="generate_recent", recent=2))) == 2


def test_info_generate_save_and_download(judged_home: dict, tmp_path: Path) -> None:
    code, out = cli("info", "--id", ADAM)
    info = json.loads(out)
    assert code == 0 and info["title"].startswith("Adam") and info["judge_status"] == "judged"
    assert info["code_status"] is None  # judged, no program yet
    assert cli("info", "--id", "no-such-paper")[0] == 1

    saved_dir = tmp_path / "saved"
    code, out = cli("generate", "--title", "Adam: A Method for Stochastic Optimization", "--save",
                    "--output-dir", str(saved_dir), "--json")
    result = json.loads(out)
    assert code == 0 and [p["paper_id"] for p in result["papers"]] == [ADAM]
    assert result["papers"][0]["code_status"] == "generated"
    program = (saved_dir / f"{ADAM}.py").read_text()
    meta = json.loads((saved_dir / f"{ADAM}.json").read_text())
    assert "from dataset_loader import" in program and meta["code_key"].endswith("/v1.py")
    # Only the asked-for paper got a program, not the rest of the partition.
    index = judged_home["index"]
    assert index.get(ADAM)["code_status"] == "generated" and index.get(VGG).get("code_status") is None
    assert json.loads(cli("info", "--id", ADAM)[1])["code"]["versions"] == [meta["code_key"]]

    # Asking again writes nothing new (same generator, same prompt version); --regenerate keeps v1.
    assert cli("generate", "--id", ADAM, "--regenerate")[0] == 0
    store = judged_home["store"]
    assert store.get(CODE_BUCKET, meta["code_key"]).decode() == program  # never overwritten

    out_dir = tmp_path / "download"
    code, out = cli("download", "code", "--partition", "iclr|2015", str(out_dir))
    assert code == 0 and "copied" in out
    copied = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert meta["code_key"] in copied and meta["code_key"].replace(".py", ".json") in copied
    assert cli("download", "code", "--id", "no-such-paper", str(out_dir))[0] == 1


def test_smoke_run_sorts_outcomes() -> None:
    ok = ('import json\nfrom annapurna_device import time_budget_s\nfrom dataset_loader import load_dataset\n'
          'train, test, info = load_dataset("synthetic", batch_size=16)\n'
          'print("METRICS: " + json.dumps({"step": 1, "budget": time_budget_s()}))\n')
    passed = smoke_run(ok, time_budget_s=3, timeout_s=120)
    assert passed.status == "passed" and "1 METRICS lines" in passed.detail

    crashed = smoke_run(ok.replace("batch_size=16)", "batch_size=16)\ninfo['missing']"), time_budget_s=3, timeout_s=120)
    assert crashed.status == "failed" and "KeyError" in crashed.detail
    assert "Traceback" in crashed.error_tail and "info['missing']" in crashed.error_tail

    unstaged = smoke_run(ok.replace('"synthetic"', '"cifar100"'), time_budget_s=3, timeout_s=120)
    assert unstaged.status == "inconclusive" and "not staged" in unstaged.detail
