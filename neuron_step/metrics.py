"""The `METRICS: {json}` line protocol between generated programs and the pipeline."""

from __future__ import annotations

import json
import math
from typing import Any

PREFIX = "METRICS:"


def parse_metrics(stdout: str) -> list[dict[str, Any]]:
    """Every well-formed METRICS line, in order; malformed ones are skipped (the program's problem)."""
    found: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith(PREFIX):
            continue
        try:
            value = json.loads(line[len(PREFIX) :].strip())
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def final_metrics(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    final: dict[str, Any] = {}
    for m in metrics:
        final.update(m)
    return final


def numeric_values(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def all_finite(metrics: dict[str, Any]) -> bool:
    values = numeric_values(metrics)
    return bool(values) and all(math.isfinite(v) for v in values.values())


def loss_fell(metrics: list[dict[str, Any]]) -> bool | None:
    """Did the training loss go down? None when the program reported too little to tell."""
    final = final_metrics(metrics)
    if isinstance(final.get("initial_loss"), int | float) and isinstance(final.get("loss"), int | float):
        return final["loss"] < final["initial_loss"]
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), int | float) and not m.get("final")]
    if len(losses) < 2:
        return None
    return losses[-1] < losses[0]
