"""Proceedings sites (NeurIPS, MLSys, PMLR) parsed and crawled from a local server.

No licensed raw HTML of these sites exists in the shared fixtures, so the pages below follow their
published structure: the year listing links each paper's page, whose name changes by year, and the
paper page links its PDF. The crawler must follow those links, never build them.
"""

from __future__ import annotations

import pytest

from annapurna_resources.sources import FetchOptions
from annapurna_resources.sources.parsing import SAFE_ID, SourceFetchError
from annapurna_resources.sources.proceedings import (
    ProceedingsFetcher,
    find_pmlr_volume,
    find_year_link,
    parse_listing,
    parse_paper_page,
    parse_pmlr_volume,
    split_authors,
)
from tests.http_replay import ReplayServer, Reply, Request

HTML = {"Content-Type": "text/html; charset=utf-8"}

FRONT = """<html><body><div class="container-fluid"><ul>
<li><a href="/paper_files/paper/2023">Advances in Neural Information Processing Systems 36  (NeurIPS 2023)</a></li>
<li><a href="/paper_files/paper/2022">Advances in Neural Information Processing Systems 35  (NeurIPS 2022)</a></li>
<li><a href="/paper_files/paper/2019">Advances in Neural Information Processing Systems 32  (NeurIPS 2019)</a></li>
</ul></div></body></html>"""


def listing(year: int, suffix: str, n: int) -> str:
    items = "".join(
        f'<li class="conference"><div class="paper-content"><a title="paper title" '
        f'href="/paper_files/paper/{year}/hash/{i:032x}-{suffix}.html">Paper {i} of {year}: Graph Networks</a>'
        f' <span class="paper-authors"><i>Ada Lovelace{i}, Alan Turing</i></span></div></li>'
        for i in range(n)
    )
    return f"<html><body><ul class='paper-list'>{items}</ul><a href='/paper_files/paper/{year}/file/bibtex'>b</a></body></html>"


def paper_page(i: int, year: int, pdf_suffix: str) -> str:
    return f"""<html><body><div class="container-fluid"><div class="col">
<h4>Paper {i} of {year}: Graph Networks</h4>
<a class="btn" href="/paper_files/paper/{year}/file/{i:032x}-Bibtex.bib">Bibtex</a>
<a class="btn" href="/paper_files/paper/{year}/file/{i:032x}-Supplemental.pdf">Supplemental</a>
<a class="btn" href="/paper_files/paper/{year}/file/{i:032x}-{pdf_suffix}.pdf">Paper</a>
<h4>Authors</h4><p><i>Ada Lovelace{i}, Alan Turing</i></p>
<h4>Abstract</h4><p>We propose graph networks
number {i}.</p><p>Second paragraph.</p>
</div></div></body></html>"""


def neurips_site() -> dict[str, tuple[int, dict[str, str], str]]:
    routes: dict[str, tuple[int, dict[str, str], str]] = {"/": (200, HTML, FRONT)}
    for year, suffix, pdf_suffix in ((2019, "Abstract", "Paper"), (2022, "Abstract-Conference", "Paper-Conference")):
        routes[f"/paper_files/paper/{year}"] = (200, HTML, listing(year, suffix, 5))
        for i in range(5):
            routes[f"/paper_files/paper/{year}/hash/{i:032x}-{suffix}.html"] = (200, HTML, paper_page(i, year, pdf_suffix))
    return routes


def test_pure_parsers() -> None:
    assert find_year_link(FRONT, "https://papers.nips.cc/", 2022) == "https://papers.nips.cc/paper_files/paper/2022"
    assert find_year_link(FRONT, "https://papers.nips.cc/", 2015) is None
    listed = parse_listing(listing(2022, "Abstract-Conference", 3), "https://papers.nips.cc/paper_files/paper/2022")
    assert [p.title for p in listed] == [f"Paper {i} of 2022: Graph Networks" for i in range(3)]
    assert listed[1].authors == ["Ada Lovelace1", "Alan Turing"]
    assert listed[0].page_url.endswith(f"{0:032x}-Abstract-Conference.html")
    abstract, pdf = parse_paper_page(paper_page(4, 2019, "Paper"), "https://papers.nips.cc/x")
    assert abstract == "We propose graph networks number 4. Second paragraph."
    assert pdf == f"https://papers.nips.cc/paper_files/paper/2019/file/{4:032x}-Paper.pdf"
    assert split_authors("A. One, B. Two and C. Three") == ["A. One", "B. Two", "C. Three"]


def test_neurips_years_with_different_page_names() -> None:
    with ReplayServer(neurips_site()) as srv:
        f = ProceedingsFetcher(neurips_url=srv.url, delay_s=0, sleep=lambda s: None)
        old = list(f.fetch("neurips", 2019, FetchOptions()))
        new = list(f.fetch("neurips", 2022, FetchOptions(max_papers=2, offset=1)))
    assert len(old) == 5 and len(new) == 2
    assert old[0].paper_id == "neurips2019-paper-0-of-2019-graph-networks" and SAFE_ID.match(old[0].paper_id)
    assert old[0].pdf_url == f"{srv.url}/paper_files/paper/2019/file/{0:032x}-Paper.pdf"
    assert new[0].pdf_url == f"{srv.url}/paper_files/paper/2022/file/{1:032x}-Paper-Conference.pdf"
    assert new[0].abstract.startswith("We propose graph networks number 1.")
    assert all(p.source == "proceedings" and p.venue == "neurips" for p in old + new)


def test_mlsys_listing_with_its_own_suffix() -> None:
    front = '<html><body><a href="/paper_files/paper/2023">Proceedings of Machine Learning and Systems 5  (MLSys 2023)</a></body></html>'
    routes = {"/": (200, HTML, front), "/paper_files/paper/2023": (200, HTML, listing(2023, "Abstract-mlsys2023", 2))}
    for i in range(2):
        routes[f"/paper_files/paper/2023/hash/{i:032x}-Abstract-mlsys2023.html"] = (200, HTML, paper_page(i, 2023, "Paper-mlsys2023"))
    with ReplayServer(routes) as srv:
        papers = list(ProceedingsFetcher(mlsys_url=srv.url, delay_s=0).fetch("mlsys", 2023, FetchOptions()))
    assert [p.paper_id for p in papers] == ["mlsys2023-paper-0-of-2023-graph-networks", "mlsys2023-paper-1-of-2023-graph-networks"]
    assert papers[1].pdf_url is not None and papers[1].pdf_url.endswith("-Paper-mlsys2023.pdf")


PMLR_INDEX = """<html><body><ul class="proceedings-list">
<li><a href="v203/">Volume 203</a> Proceedings of The 1st Workshop on Machine Learning, 2023</li>
<li><a href="v202/">Volume 202</a> Proceedings of the 40th International Conference on Machine Learning, Honolulu, Hawaii, USA, 23-29 July 2023</li>
<li><a href="v162/">Volume 162</a> Proceedings of the 39th International Conference on Machine Learning, Baltimore, 17-23 July 2022</li>
</ul></body></html>"""

PMLR_VOLUME = """<html><body>
<div class="paper"><p class="title">Scaling Laws for Sparse Models</p>
<p class="details"><span class="authors">Grace Hopper,&nbsp;Edsger Dijkstra</span>; Proceedings of the 39th ICML, PMLR 162:1-12</p>
<p class="links">[<a href="https://proceedings.mlr.press/v162/hopper22a.html">abs</a>][<a href="https://proceedings.mlr.press/v162/hopper22a/hopper22a.pdf" target="_blank">Download PDF</a>][<a href="https://proceedings.mlr.press/v162/hopper22a/hopper22a-supp.pdf">Supplementary PDF</a>]</p></div>
<div class="paper"><p class="title">A Second Paper</p><p class="details"><span class="authors">Barbara Liskov</span></p>
<p class="links">[<a href="v162/liskov22b.html">abs</a>][<a href="v162/liskov22b/liskov22b.pdf">Download PDF</a>]</p></div>
</body></html>"""


def test_pmlr_icml_volume() -> None:
    assert find_pmlr_volume(PMLR_INDEX, "https://proceedings.mlr.press/", 2022) == "https://proceedings.mlr.press/v162/"
    assert find_pmlr_volume(PMLR_INDEX, "https://proceedings.mlr.press/", 2023) == "https://proceedings.mlr.press/v202/"
    assert find_pmlr_volume(PMLR_INDEX, "https://proceedings.mlr.press/", 2010) is None
    listed = parse_pmlr_volume(PMLR_VOLUME, "https://proceedings.mlr.press/v162/")
    assert listed[0].authors == ["Grace Hopper", "Edsger Dijkstra"]
    assert listed[0].pdf_url == "https://proceedings.mlr.press/v162/hopper22a/hopper22a.pdf"
    assert listed[1].page_url == "https://proceedings.mlr.press/v162/v162/liskov22b.html"

    volume = PMLR_VOLUME.replace("https://proceedings.mlr.press/v162/", "/v162/").replace('"v162/', '"/v162/')
    routes = {
        "/": (200, HTML, PMLR_INDEX),
        "/v162/": (200, HTML, volume),
        "/v162/hopper22a.html": (200, HTML, '<div id="abstract" class="abstract">Sparse models\n scale.</div>'),
        "/v162/liskov22b.html": (200, HTML, "<html><body>no abstract here</body></html>"),
    }
    with ReplayServer(routes) as srv:
        papers = list(ProceedingsFetcher(pmlr_url=srv.url, delay_s=0).fetch("icml", 2022, FetchOptions()))
    assert [(p.title, p.abstract) for p in papers] == [("Scaling Laws for Sparse Models", "Sparse models scale."),
                                                       ("A Second Paper", "")]
    assert papers[0].pdf_url == f"{srv.url}/v162/hopper22a/hopper22a.pdf"


def test_search_term_narrows_by_title_before_fetching_pages() -> None:
    with ReplayServer(neurips_site()) as srv:
        papers = list(ProceedingsFetcher(neurips_url=srv.url, delay_s=0).fetch(
            "neurips", 2019, FetchOptions(search_term="paper 3")))
        page_hits = [r for r in srv.requests if "/hash/" in r.path]
    assert [p.title for p in papers] == ["Paper 3 of 2019: Graph Networks"]
    assert len(page_hits) == 1


def test_find_pdf_url_by_title_for_fallback() -> None:
    with ReplayServer(neurips_site()) as srv:
        f = ProceedingsFetcher(neurips_url=srv.url, delay_s=0)
        url = f.find_pdf_url("neurips", 2022, "paper 2 of 2022 -- GRAPH networks")
        assert f.find_pdf_url("neurips", 2022, "Unknown paper") is None
        assert f.find_pdf_url("iclr", 2022, "anything") is None
    assert url == f"{srv.url}/paper_files/paper/2022/file/{2:032x}-Paper-Conference.pdf"


def test_bad_answers() -> None:
    # A year the site does not list, an empty front page, and an HTML error page instead of a listing.
    with ReplayServer({"/": (200, HTML, FRONT)}) as srv:
        f = ProceedingsFetcher(neurips_url=srv.url, delay_s=0, sleep=lambda s: None)
        with pytest.raises(SourceFetchError, match="no 2015 proceedings"):
            list(f.fetch("neurips", 2015, FetchOptions()))
        with pytest.raises(SourceFetchError, match="HTTP 404"):
            list(f.fetch("neurips", 2019, FetchOptions()))
    with ReplayServer({"/": (200, HTML, "")}) as srv:
        with pytest.raises(SourceFetchError):
            list(ProceedingsFetcher(neurips_url=srv.url, delay_s=0).fetch("neurips", 2019, FetchOptions()))
    routes = neurips_site()
    routes["/paper_files/paper/2019"] = (200, HTML, "<html><body><h1>Internal error</h1></body></html>")
    with ReplayServer(routes) as srv:
        assert list(ProceedingsFetcher(neurips_url=srv.url, delay_s=0).fetch("neurips", 2019, FetchOptions())) == []


def test_broken_paper_page_keeps_the_paper_without_abstract() -> None:
    routes = neurips_site()
    del routes[f"/paper_files/paper/2019/hash/{2:032x}-Abstract.html"]
    with ReplayServer(routes) as srv:
        papers = list(ProceedingsFetcher(neurips_url=srv.url, delay_s=0, sleep=lambda s: None).fetch(
            "neurips", 2019, FetchOptions()))
    assert len(papers) == 5 and papers[2].abstract == "" and papers[2].pdf_url is None


def test_429_retry_after_then_ok() -> None:
    routes: dict = neurips_site()
    calls = {"n": 0}
    front = routes["/"]

    def limited(_: Request) -> Reply:
        calls["n"] += 1
        return Reply(429, {"Retry-After": "4"}, b"slow down") if calls["n"] == 1 else Reply(*front)

    routes["/"] = limited
    sleeps: list[float] = []
    with ReplayServer(routes) as srv:
        papers = list(ProceedingsFetcher(neurips_url=srv.url, delay_s=0, sleep=sleeps.append).fetch(
            "neurips", 2019, FetchOptions(max_papers=1)))
    assert len(papers) == 1 and 4.0 in sleeps


def test_live_source_dispatch_and_openreview_pdf_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """LiveSource: NeurIPS 2019 comes from the proceedings; NeurIPS 2022 from OpenReview v1, whose PDF
    is rate limited, so the PDF comes from the proceedings page found by title."""
    import json

    from annapurna_resources.sources.live import LiveSource

    pdf = b"%PDF-1.4\n" + b"x" * 3000 + b"\n%%EOF"
    routes: dict = neurips_site()
    routes[f"/paper_files/paper/2022/file/{2:032x}-Paper-Conference.pdf"] = (200, {"Content-Type": "application/pdf"}, pdf)
    note = {"id": "nX", "forum": "nX", "invitation": "NeurIPS.cc/2022/Conference/-/Blind_Submission",
            "content": {"title": "Paper 2 of 2022: Graph Networks", "authors": ["Ada Lovelace2"], "abstract": "a",
                        "venue": "NeurIPS 2022 Accept", "venueid": "NeurIPS.cc/2022/Conference", "pdf": "/pdf/nx.pdf"}}
    routes["/or1/notes"] = (200, {"Content-Type": "application/json"}, json.dumps({"notes": [note], "count": 1}))
    routes["/or1/pdf"] = (429, {"Retry-After": "0"}, b"Too many requests")
    with ReplayServer(routes) as srv:
        monkeypatch.setenv("NEURIPS_PROCEEDINGS_URL", srv.url)
        monkeypatch.setenv("OPENREVIEW_API_V1_URL", srv.url + "/or1")
        monkeypatch.setenv("MLSYS_PROCEEDINGS_URL", srv.url)
        source = LiveSource(proceedings_delay_s=0, partial_dir=str(tmp_path))
        old = list(source.fetch_papers("neurips", 2019, FetchOptions(max_papers=1)))
        assert old[0].source == "proceedings"
        [paper] = list(source.fetch_papers("neurips", 2022, FetchOptions()))
        assert paper.source == "openreview" and paper.pdf_url == f"{srv.url}/or1/pdf?id=nX"
        assert source.fetch_pdf(paper, 1_000_000) == pdf
        assert len(srv.hits("/or1/pdf")) == 4  # waited out the rate limit, then fell back
        from annapurna_resources.sources import PdfUnavailable, SourcePaper

        lonely = SourcePaper(paper_id="x", venue="neurips", year=2019, title="t", authors=[], abstract="",
                             source="proceedings")
        with pytest.raises(PdfUnavailable, match="no PDF link"):
            source.fetch_pdf(lonely, 1_000_000)
        with pytest.raises(SourceFetchError, match="no 1999 proceedings"):
            list(source.fetch_papers("mlsys", 1999, FetchOptions()))
