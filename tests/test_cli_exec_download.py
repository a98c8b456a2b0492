"""`annapurna exec` (human and JSON output, artifacts) and `annapurna download results`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annapurna_assets.cli import main
from annapurna_assets.resources import build_index, build_store
from annapurna_resources.settings import RESULTS_BUCKET


def test_exec_prints_json_and_copies_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = tmp_path / "train.py"
    program.write_text("import json\nfor i in range(4):\n    print('METRICS: ' + json.dumps({'step': i, 'loss': 2.0 / (i + 1)}))\n"
                       "open('weights.txt', 'w').write('w')\n")
    code = main(["exec", str(program), "--timeout", "30", "--json", "--artifacts", str(tmp_path / "out")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert {"status", "exit_code", "wall_s", "metrics", "stdout_tail", "stderr_tail", "artifacts"} <= set(result)
    assert result["status"] == "passed" and result["exit_code"] == 0
    assert [m["loss"] for m in result["metrics"]] == [2.0, 1.0, 2.0 / 3, 0.5]
    assert (tmp_path / "out" / "weights.txt").read_text() == "w"
    assert (tmp_path / "out" / "training_curve.png").read_bytes().startswith(b"\x89PNG")


def test_exec_failing_program_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = tmp_path / "bad.py"
    program.write_text("raise RuntimeError('diverged')\n")
    assert main(["exec", str(program), "--timeout", "30", "--artifacts", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("failed (exit code 1)") and "RuntimeError: diverged" in out


def test_download_results_by_id_and_partition(annapurna_home: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    index, store = build_index(), build_store()
    index.upsert([{"paper_id": "iclr2015-a", "venue": "iclr", "year": 2015, "title": "A"},
                  {"paper_id": "iclr2015-b", "venue": "iclr", "year": 2015, "title": "B"}])
    for pid in ("iclr2015-a", "iclr2015-b"):
        run = f"runs/iclr/2015/{pid}/abc123-local-cpu-20260101T000000Z/"
        store.put(RESULTS_BUCKET, run + "stdout.txt", f"out of {pid}".encode())
        store.put(RESULTS_BUCKET, run + "metrics.json", b"[]")
    store.put(RESULTS_BUCKET, "runs/icml/2020/other/x/stdout.txt", b"not asked for")

    assert main(["download", "results", "--id", "iclr2015-a", str(tmp_path / "one")]) == 0
    got = sorted(p.relative_to(tmp_path / "one").as_posix() for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert got == ["runs/iclr/2015/iclr2015-a/abc123-local-cpu-20260101T000000Z/metrics.json",
                   "runs/iclr/2015/iclr2015-a/abc123-local-cpu-20260101T000000Z/stdout.txt"]

    assert main(["download", "results", "--partition", "iclr|2015", str(tmp_path / "part")]) == 0
    assert len([p for p in (tmp_path / "part").rglob("*") if p.is_file()]) == 4
    assert "copied 2 runs (4 files)" in capsys.readouterr().out
    assert main(["download", "results", "--id", "missing", str(tmp_path / "none")]) == 1
