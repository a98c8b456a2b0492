"""The interface `test_results` runs programs through; transports and hosts live beside it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import dagster as dg

from neuron_step.types import ProgramJob, ProgramRun


class ProgramExecutor(dg.ConfigurableResource, ABC):
    @property
    @abstractmethod
    def runtime(self) -> str:
        """Names where programs run (e.g. `local-cpu`, `trn1-neuron`); part of a run's identity, so
        the same program is run again on a different runtime but never twice on the same one."""

    @abstractmethod
    def run_programs(self, context: dg.AssetExecutionContext | None, jobs: list[ProgramJob]) -> Iterator[ProgramRun]:
        """Run every job (in parallel over the executor's slots) and yield each result as it ends.
        A failing program is an ordinary result; only a broken executor raises."""
