"""Pick the backend of every interface for the current profile (`ANNAPURNA_PROFILE=local|aws`)."""

from __future__ import annotations

import os
from typing import Any

from annapurna_assets.io_manager import ParquetObjectStoreIOManager
from annapurna_resources.index import PaperIndex
from annapurna_resources.index.sqlite import SqliteIndex
from annapurna_resources.llm import LLM
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.object_store.local import LocalObjectStore
from annapurna_resources.queue import RequestQueue
from annapurna_resources.queue.spool import SpoolRequestQueue
from annapurna_resources.settings import REQUEST_QUEUE, annapurna_home, profile, sources_mode
from annapurna_resources.sources import PaperSource
from annapurna_resources.sources.demo import DemoSource
from neuron_step.executor import ProgramExecutor
from neuron_step.pipes_client import executor_from_env


def build_store() -> ObjectStore:
    if profile() == "aws":
        from annapurna_resources.object_store.s3 import s3_object_store_from_env

        return s3_object_store_from_env()
    return LocalObjectStore(root=str(annapurna_home() / "objects"))


def build_index() -> PaperIndex:
    # ANNAPURNA_INDEX overrides the profile's choice (S3 with a local index, say).
    if os.environ.get("ANNAPURNA_INDEX", "opensearch" if profile() == "aws" else "sqlite") == "opensearch":
        from annapurna_resources.index.opensearch import opensearch_index_from_env

        return opensearch_index_from_env()
    return SqliteIndex(path=str(annapurna_home() / "index.db"))


def build_llm() -> LLM:
    # ANNAPURNA_LLM=auto|bedrock|anthropic|offline; auto picks from the credentials and logs why.
    from annapurna_resources.llm.choose import build_llm as choose_llm

    return choose_llm()


def build_sources() -> PaperSource:
    mode = sources_mode()
    if mode == "demo":
        return DemoSource()
    from annapurna_resources.sources.live import LiveSource

    return LiveSource()


def build_executor() -> ProgramExecutor:
    # Transport, slots, host and dataset settings from the environment: see executor_from_env.
    return executor_from_env(annapurna_home(), aws=profile() == "aws")


def build_queue() -> RequestQueue:
    # ANNAPURNA_QUEUE=spool|sqs overrides the profile's choice.
    if os.environ.get("ANNAPURNA_QUEUE", "sqs" if profile() == "aws" else "spool") == "sqs":
        from annapurna_resources.queue.sqs import sqs_queue_from_env

        return sqs_queue_from_env()
    return SpoolRequestQueue(root=str(annapurna_home() / "queue" / REQUEST_QUEUE))


def build_resources() -> dict[str, Any]:
    store = build_store()
    return {
        "store": store,
        "index": build_index(),
        "llm": build_llm(),
        "sources": build_sources(),
        "executor": build_executor(),
        "queue": build_queue(),
        "io_manager": ParquetObjectStoreIOManager(store=store),
    }
