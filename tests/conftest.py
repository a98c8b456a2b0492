from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real-world samples live beside the repository (never copied into it); tests skip without them.
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


@pytest.fixture
def annapurna_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ANNAPURNA_HOME", str(home))
    monkeypatch.setenv("ANNAPURNA_PROFILE", "local")
    monkeypatch.setenv("ANNAPURNA_SOURCES", "demo")
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    (home / "dagster").mkdir(parents=True)
    return home


@pytest.fixture(autouse=True)
def offline_llm_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a real LLM because of a key in the developer's shell; tests of the Claude
    backends set ANNAPURNA_LLM and their own local server explicitly."""
    monkeypatch.setenv("ANNAPURNA_LLM", "offline")
