"""How long the demo takes, and where the time goes: training (programs running), LLM, everything else.

Run by hand: `.venv/bin/python bench/bench_demo.py [--time-budget 20]`. It runs `annapurna demo` on a
fresh ANNAPURNA_HOME, then a second time (which should do nothing new), and prints the split:

- training: the wall-clock time during which at least one program was running (slots overlap, so
  this is the union of the run intervals, not their sum); the sum is printed too;
- LLM: the time spent inside judge and code-generation calls (recorded per call in the index);
- other: the rest (Dagster orchestration, PDF rendering and extraction, storage, interpreter start-up).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--time-budget", default="20")
    args = parser.parse_args()
    annapurna = str(Path(sys.executable).parent / "annapurna")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ANNAPURNA_HOME": tmp, "DAGSTER_HOME": f"{tmp}/dagster", "ANNAPURNA_SOURCES": "demo",
               "ANNAPURNA_PROFILE": "local", "ANNAPURNA_LLM": os.environ.get("ANNAPURNA_LLM", "offline")}
        t0 = time.monotonic()
        subprocess.run([annapurna, "demo", "--time-budget", args.time_budget], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run([annapurna, "demo", "--time-budget", args.time_budget], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        second = time.monotonic() - t0

        os.environ["ANNAPURNA_HOME"] = tmp
        from annapurna_assets.resources import build_index

        intervals, run_sum, llm_s, runs, calls = [], 0.0, 0.0, 0, 0
        for doc in build_index().iter_docs():
            j, c, t = doc.get("judgment") or {}, doc.get("code") or {}, doc.get("test") or {}
            llm_s += float(j.get("seconds", 0.0)) + float(c.get("seconds", 0.0))
            calls += int(j.get("calls", 0)) + int(c.get("calls", 0))
            if t.get("wall_s") is not None:
                end = datetime.fromisoformat(t["finished_at"]).timestamp()
                intervals.append((end - t["wall_s"], end))
                run_sum += t["wall_s"]
                runs += 1
    training = union_seconds(intervals)
    other = first - training - llm_s
    print(f"demo, first run:  {first:7.1f} s  ({runs} programs, time budget {args.time_budget} s, {calls} LLM calls)")
    print(f"  training        {training:7.1f} s  {training / first:6.1%}   (sum over programs {run_sum:.1f} s; "
          f"slot parallelism {run_sum / training if training else 0:.2f}x)")
    print(f"  LLM             {llm_s:7.1f} s  {llm_s / first:6.1%}")
    print(f"  other           {other:7.1f} s  {other / first:6.1%}   (orchestration, PDFs, storage, start-up)")
    print(f"demo, second run: {second:7.1f} s  ({second / first:.2f}x the first; nothing new to do)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
