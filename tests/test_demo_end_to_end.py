"""The README's first command, as a user runs it: `annapurna demo` on a fresh ANNAPURNA_HOME, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from annapurna_resources.index import STAGE_KEYS
from annapurna_resources.sources.demo import demo_partitions, load_corpus

REPO = Path(__file__).resolve().parents[1]
ANNAPURNA = str(Path(sys.executable).parent / "annapurna")


def cli(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANNAPURNA_HOME": str(home), "ANNAPURNA_PROFILE": "local", "ANNAPURNA_SOURCES": "demo",
           "DAGSTER_HOME": str(home / "dagster"), "ANNAPURNA_TIME_BUDGET_S": "6", "ANNAPURNA_LLM": "offline"}
    return subprocess.run([ANNAPURNA, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_demo_runs_every_partition_and_a_second_run_adds_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = cli(home, "demo", "--time-budget", "6")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for venue, year in demo_partitions():
        assert f"{venue}|{year}" in first.stdout
    assert "make ui" in first.stdout

    status = json.loads(cli(home, "status", "--json").stdout)
    for key in STAGE_KEYS:
        assert key in status
    assert set(status["partitions"]) == {f"{v}|{y}" for v, y in demo_partitions()}
    assert status["papers"] == len(load_corpus())
    # Every paper is judged except the three bad entries, which carry an error status instead.
    assert status["judged"] == status["papers"] - 3 and status["errors"] == 3
    assert status["accepted"] >= 8 and status["generated"] == status["accepted"]
    assert status["tested"] == status["generated"] and status["passed"] == status["tested"] and status["failed"] == 0
    assert status["partitions"]["icml|2020"]["errors"] == 1 and status["partitions"]["arxiv|2016"]["errors"] == 1

    second = cli(home, "demo", "--time-budget", "6")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "0 new PDFs, 0 new judgments, 0 new programs, 0 new program runs" in second.stdout
    assert json.loads(cli(home, "status", "--json").stdout) == status


def test_definitions_validate(tmp_path: Path) -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ANNAPURNA_PROFILE": "local", "ANNAPURNA_SOURCES": "demo",
                                 "ANNAPURNA_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
