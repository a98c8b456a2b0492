from pathlib import Path

import pytest

from annapurna_resources.index import STAGE_KEYS
from annapurna_resources.index.sqlite import SqliteIndex, fts_query


@pytest.fixture
def index(tmp_path: Path) -> SqliteIndex:
    idx = SqliteIndex(path=str(tmp_path / "index.db"))
    idx.upsert([
        {"paper_id": "adam", "venue": "iclr", "year": 2015, "title": "Adam: A Method for Stochastic Optimization",
         "authors": ["Diederik P. Kingma", "Jimmy Ba"], "abstract": "An optimizer using moment estimates of the gradient.",
         "published": "2014-12-22", "status": "ok", "dedup_key": "adam|kingma"},
        {"paper_id": "bn", "venue": "icml", "year": 2015, "title": "Batch Normalization",
         "authors": ["Sergey Ioffe"], "abstract": "Normalizes layer inputs with mini-batch statistics.",
         "published": "2015-02-11", "status": "ok"},
        {"paper_id": "vit", "venue": "iclr", "year": 2021, "title": "An Image is Worth 16x16 Words",
         "authors": ["Alexey Dosovitskiy"], "abstract": "Transformers on image patches.", "published": "2020-10-22",
         "status": "ok"},
    ])
    return idx


def test_upsert_merges_fields_of_later_stages(index: SqliteIndex) -> None:
    index.upsert([{"paper_id": "adam", "judge_status": "judged", "accepted": True}])
    doc = index.get("adam")
    assert doc is not None
    assert doc["title"].startswith("Adam") and doc["judge_status"] == "judged" and doc["accepted"] is True


def test_queries(index: SqliteIndex) -> None:
    assert [d["paper_id"] for d in index.search("stochastic gradient optimizer")][0] == "adam"
    assert [d["paper_id"] for d in index.by_title("batch normalization")] == ["bn"]
    assert [d["paper_id"] for d in index.by_author("Kingma")] == ["adam"]
    assert [d["paper_id"] for d in index.by_keywords(["image", "patches"])] == ["vit"]
    assert [d["paper_id"] for d in index.recent(2)] == ["vit", "bn"]
    assert [d["paper_id"] for d in index.by_status("status", "ok")] == ["adam", "bn", "vit"]
    assert [d["paper_id"] for d in index.by_dedup_key("adam|kingma")] == ["adam"]


def test_similar_excludes_itself_later_years_and_duplicates(index: SqliteIndex) -> None:
    index.upsert([{"paper_id": "adam-copy", "venue": "arxiv", "year": 2014, "title": "Adam optimizer",
                   "abstract": "moment estimates of the gradient", "status": "duplicate"}])
    found = [d["paper_id"] for d in index.similar("optimizer gradient image transformers", exclude=["adam"], max_year=2015)]
    assert "adam" not in found and "vit" not in found and "adam-copy" not in found


def test_search_input_is_never_fts_syntax(index: SqliteIndex) -> None:
    assert fts_query('title: "x" OR (y* NEAR z)') == '"title" OR "near"'
    assert index.search('") OR * --') == []


def test_counts_shape(index: SqliteIndex) -> None:
    index.upsert([{"paper_id": "adam", "judge_status": "judged", "accepted": True, "code_status": "generated",
                   "test_status": "passed"},
                  {"paper_id": "bn", "judge_status": "judged", "accepted": True, "code_status": "generated",
                   "test_status": "timeout"}])
    counts = index.counts()
    for key in STAGE_KEYS:
        assert key in counts and key in counts["partitions"]["iclr|2015"]
    assert counts["papers"] == 3 and counts["passed"] == 1 and counts["failed"] == 1 and counts["tested"] == 2
    assert counts["partitions"]["icml|2015"]["failed"] == 1
