"""What goes to an executor and what comes back, independent of transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RunStatus = Literal["passed", "failed", "timeout", "killed", "invalid"]


@dataclass
class ProgramJob:
    paper_id: str
    code: str
    sha256: str
    run_name: str  # unique, safe in paths: <paper_id>-<sha256[:12]>
    dataset: str = "synthetic"
    timeout_s: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProgramRun:
    paper_id: str
    sha256: str
    status: RunStatus
    exit_code: int | None
    wall_s: float
    device: str
    runtime: str
    metrics: list[dict[str, Any]]
    stdout: bytes
    stderr: bytes
    error: str | None = None
    protections: list[str] = field(default_factory=list)
    pipes_messages: int = 0
    slot: str | None = None
    # The run never reached the program (host or transport down): not the program's fault, so the
    # pipeline runs it again next time instead of keeping this as its result.
    infrastructure_error: bool = False

    @property
    def final_metrics(self) -> dict[str, Any]:
        final: dict[str, Any] = {}
        for m in self.metrics:
            final.update(m)
        return final
