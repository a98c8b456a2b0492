from pathlib import Path

import pytest

from annapurna_assets.text_extraction import TextExtractionError, extract_text, title_and_abstract_from_text
from annapurna_resources.sources import FetchOptions
from annapurna_resources.sources.demo import DemoSource, corrupt_pdf_bytes, render_paper_pdf


def test_demo_pdf_round_trips_through_pypdf() -> None:
    paper = next(DemoSource().fetch_papers("iclr", 2015, FetchOptions(search_term="Adam")))
    got = extract_text(render_paper_pdf(paper))
    title, abstract = title_and_abstract_from_text(got.text)
    assert title == "Adam: A Method for Stochastic Optimization"
    assert abstract == paper.abstract
    assert got.pages_read == got.pages_total == 1 and not got.truncated


def test_corrupt_and_non_pdf_bytes_raise_a_clear_error() -> None:
    with pytest.raises(TextExtractionError, match="pypdf could not read"):
        extract_text(corrupt_pdf_bytes("x"))
    with pytest.raises(TextExtractionError, match="not a PDF"):
        extract_text(b"<html>429 Too Many Requests</html>")


def test_real_paper_pdf_with_page_and_char_caps(shared_fixtures: Path) -> None:
    data = (shared_fixtures / "pdf" / "acl2020_s2orc_2020.acl-main.447.pdf").read_bytes()
    got = extract_text(data, max_pages=2)
    assert "S2ORC" in got.text and got.pages_read == 2 and got.pages_total == 15 and got.truncated
    assert len(extract_text(data, max_chars=500).text) == 500
    title, abstract = title_and_abstract_from_text(extract_text(data, max_pages=1).text)
    assert "S2ORC" in title and len(abstract) > 200


def test_broken_xref_recovers_and_encrypted_is_refused(shared_fixtures: Path) -> None:
    recovered = extract_text((shared_fixtures / "pdf" / "pypdf_issue-297_broken_xref.pdf").read_bytes())
    assert "test example" in recovered.text
    with pytest.raises(TextExtractionError, match="encrypted"):
        extract_text((shared_fixtures / "pdf" / "pypdf_encrypted-file_rc4_password_test.pdf").read_bytes())


def test_title_and_abstract_from_plain_text() -> None:
    text = "arXiv:1234.5678v1\nA Great Title For A Paper\nJane Doe\nAbstract\nWe do things.\nMore things.\n1 Introduction\nBody"
    assert title_and_abstract_from_text(text) == ("A Great Title For A Paper", "We do things. More things.")
    assert title_and_abstract_from_text("") == ("", "")
