"""Acceptance: `annapurna scrape arxiv 2024 --max-papers 10` against a local arXiv replaying the real
recorded feed, through Dagster, on the local store and on S3 (moto's server); a second run fetches
nothing new.

The feed is the real 100-entry arXiv answer from the shared fixtures, served page by page. It was
recorded for the query "testing", so its entries span 2001-2026: the year partition keeps the ten
first published in 2024, exactly as the live query's submittedDate range would. PDFs are generated
per paper (their title and abstract as text) and served from the same local server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from annapurna_assets.cli.scrape import papers_run_config
from tests.http_replay import ReplayServer, Reply, Request, paginated_atom_feed, range_reply

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def make_pdf(title: str, abstract: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    text = f"{title}\n\nAbstract\n{abstract}".encode("latin-1", "replace").decode("latin-1")
    pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


@pytest.fixture
def arxiv_site(shared_fixtures: Path) -> Iterator[ReplayServer]:
    from arxiv import _feed

    feed = (shared_fixtures / "arxiv" / "arxiv_query_testing_start0_max100.xml").read_bytes()
    pdfs = {}
    for result in _feed.parse(feed).results:
        short = result.entry_id.rsplit("/", 1)[-1]
        pdfs[f"/pdf/{short}"] = make_pdf(result.title, result.summary)

    def pdf(request: Request) -> Reply:
        data = pdfs.get(request.path)
        return range_reply(data, request) if data else Reply(404, {}, b"no such paper")

    with ReplayServer({"/api/query": paginated_atom_feed(feed)}, fallback=pdf) as srv:
        yield srv


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from annapurna_assets.cli import main; sys.exit(main(sys.argv[1:]))", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )


def base_env(tmp_path: Path, srv: ReplayServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANNAPURNA_", "OPENSEARCH_"))}
    dead = "http://127.0.0.1:9"  # every other source points nowhere: nothing may leave this machine
    env.update({
        "ANNAPURNA_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "ANNAPURNA_PROFILE": "local",
        "ANNAPURNA_SOURCES": "live",
        "ARXIV_API_URL": srv.url + "/api/query",
        "ARXIV_PDF_URL": srv.url + "/pdf",
        "OPENREVIEW_API_URL": dead, "OPENREVIEW_API_V1_URL": dead, "NEURIPS_PROCEEDINGS_URL": dead,
        "MLSYS_PROCEEDINGS_URL": dead, "PMLR_URL": dead,
    })
    return env


def pdf_hits(srv: ReplayServer) -> int:
    return sum(1 for r in srv.requests if r.path.startswith("/pdf/"))


def scrape_twice_and_count(env: dict[str, str], srv: ReplayServer) -> dict:
    first = cli(env, "scrape", "arxiv", "2024", "--max-papers", "10")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "10 papers, 10 new PDFs, 10 new texts, 0 with errors" in first.stdout, first.stdout
    assert pdf_hits(srv) == 10
    status = cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["partitions"]["arxiv|2024"]["papers"] == 10
    assert counts["partitions"]["arxiv|2024"]["errors"] == 0

    again = cli(env, "scrape", "arxiv", "2024", "--max-papers", "10")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "10 papers, 0 new PDFs, 0 new texts" in again.stdout, again.stdout
    assert pdf_hits(srv) == 10  # nothing downloaded twice
    assert json.loads(cli(env, "status", "--json").stdout)["partitions"]["arxiv|2024"]["papers"] == 10
    return counts


def test_run_config_shape() -> None:
    cfg = papers_run_config("mamba", 10, 5, False)
    assert cfg["ops"]["papers"]["config"] == {"search_term": "mamba", "max_papers": 10, "offset": 5}
    assert papers_run_config(None, None, 0, True)["ops"]["papers"]["config"] == {"offset": 0}


def test_bad_arguments_are_refused(annapurna_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from annapurna_assets.cli import main

    assert main(["scrape", "cvpr", "2024"]) == 2
    assert "venue must be one of" in capsys.readouterr().out
    assert main(["scrape", "iclr", "1999"]) == 2
    assert "no partition iclr|1999" in capsys.readouterr().out
    assert main(["scrape", "iclr", "2024", "--max-papers", "0"]) == 2


def test_scrape_arxiv_2024_local(tmp_path: Path, arxiv_site: ReplayServer) -> None:
    env = base_env(tmp_path, arxiv_site)
    scrape_twice_and_count(env, arxiv_site)
    raw = tmp_path / "home" / "objects" / "llm-research-papers" / "papers" / "arxiv" / "2024"
    pdfs = sorted(raw.glob("*.pdf"))
    texts = sorted(raw.glob("*.txt"))
    assert len(pdfs) == 10 and len(texts) == 10 and len(list(raw.glob("*.json"))) == 10
    assert all(p.name.startswith("arxiv-") and p.read_bytes().startswith(b"%PDF-") for p in pdfs)
    meta = json.loads(raw.joinpath(pdfs[0].stem + ".json").read_text())
    assert meta["year"] == 2024 and meta["source"] == "arxiv"
    # The extracted text is the paper's own text (its title is on page one).
    assert meta["title"].split()[0].lower() in texts[0].read_text().lower()


def test_scrape_arxiv_2024_on_s3(tmp_path: Path, arxiv_site: ReplayServer) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
        env = base_env(tmp_path, arxiv_site)
        env.update({
            # Only the object store is under test here; everything else the aws profile picks stays local.
            "ANNAPURNA_PROFILE": "aws", "ANNAPURNA_INDEX": "sqlite", "ANNAPURNA_S3_CREATE_BUCKETS": "1",
            "ANNAPURNA_QUEUE": "spool", "ANNAPURNA_LLM": "offline", "ANNAPURNA_TRANSPORT": "local",
            "AWS_ENDPOINT_URL_S3": endpoint, "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        })
        scrape_twice_and_count(env, arxiv_site)
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="llm-research-papers",
                                                     Prefix="papers/arxiv/2024/").get("Contents", [])]
        assert sum(k.endswith(".pdf") for k in keys) == 10
        assert sum(k.endswith(".txt") for k in keys) == 10
        assert sum(k.endswith(".json") for k in keys) == 10
        # Nothing landed on local disk under objects/: the store really was S3.
        assert not (tmp_path / "home" / "objects" / "llm-research-papers").exists()
    finally:
        server.stop()
