"""Small real resources for in-process pipeline tests: everything under one temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from annapurna_assets.definitions import PIPELINE_ASSETS
from annapurna_assets.io_manager import ParquetObjectStoreIOManager
from annapurna_assets.partitions import partition_key
from annapurna_resources.index.sqlite import SqliteIndex
from annapurna_resources.llm import LLM
from annapurna_resources.llm.offline import OfflineLLM
from annapurna_resources.object_store.local import LocalObjectStore
from annapurna_resources.sources import PaperSource
from annapurna_resources.sources.demo import DemoSource
from neuron_step.pipes_client import NeuronPipesClient


def make_resources(root: Path, llm: LLM | None = None, sources: PaperSource | None = None,
                   time_budget_s: float = 6.0) -> dict[str, Any]:
    store = LocalObjectStore(root=str(root / "objects"))
    return {
        "store": store,
        "index": SqliteIndex(path=str(root / "index.db")),
        "llm": llm or OfflineLLM(),
        "sources": sources or DemoSource(),
        "executor": NeuronPipesClient(slots=2, time_budget_s=time_budget_s, timeout_s=120, work_root=str(root / "jobs")),
        "io_manager": ParquetObjectStoreIOManager(store=store),
    }


def materialize_partition(resources: dict[str, Any], venue: str, year: int,
                          instance: dg.DagsterInstance | None = None, assets: list | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets or PIPELINE_ASSETS, partition_key=partition_key(venue, year), resources=resources,
                          instance=instance, raise_on_error=False)


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key.path[-1] == asset:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")
