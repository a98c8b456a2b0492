"""Pick the backend of every interface for the current profile (`ANNAPURNA_PROFILE=local|aws`)."""

from __future__ import annotations

import os
from typing import Any

from annapurna_assets.io_manager import ParquetObjectStoreIOManager
from annapurna_resources.index import PaperIndex
from annapurna_resources.index.sqlite import SqliteIndex
from annapurna_resources.llm import LLM
from annapurna_resources.llm.offline import OfflineLLM
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.object_store.local import LocalObjectStore
from annapurna_resources.settings import annapurna_home, profile, sources_mode
from annapurna_resources.sources import PaperSource
from annapurna_resources.sources.demo import DemoSource
from neuron_step.executor import ProgramExecutor
from neuron_step.pipes_client import NeuronPipesClient


def _float_env(*names: str, default: float) -> float:
    for name in names:
        if os.environ.get(name):
            return float(os.environ[name])
    return default


def build_store() -> ObjectStore:
    return LocalObjectStore(root=str(annapurna_home() / "objects"))


def build_index() -> PaperIndex:
    return SqliteIndex(path=str(annapurna_home() / "index.db"))


def build_llm() -> LLM:
    return OfflineLLM()


def build_sources() -> PaperSource:
    mode = sources_mode()
    if mode == "demo":
        return DemoSource()
    raise ValueError("ANNAPURNA_SOURCES=live needs the live sources, which this build does not have yet")


def build_executor() -> ProgramExecutor:
    return NeuronPipesClient(
        transport=os.environ.get("ANNAPURNA_TRANSPORT", "local"),
        slots=int(os.environ.get("ANNAPURNA_SLOTS", "2")),
        time_budget_s=_float_env("ANNAPURNA_TIME_BUDGET_S", default=600.0),
        timeout_s=_float_env("TRAINIUM_TIMEOUT", "MAX_EXECUTION_TIME", default=1800.0),
        work_root=str(annapurna_home() / "jobs"),
    )


def build_resources() -> dict[str, Any]:
    if profile() == "aws":
        raise ValueError("ANNAPURNA_PROFILE=aws needs the S3/OpenSearch backends, which this build does not have yet")
    store = build_store()
    return {
        "store": store,
        "index": build_index(),
        "llm": build_llm(),
        "sources": build_sources(),
        "executor": build_executor(),
        "io_manager": ParquetObjectStoreIOManager(store=store),
    }
