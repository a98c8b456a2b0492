"""Where things live, read once from the environment.

`ANNAPURNA_PROFILE=local|aws` picks the backends, `ANNAPURNA_HOME` (default `./.annapurna`) holds
everything the local profile keeps, `ANNAPURNA_SOURCES=demo|live` picks the paper sources.
"""

from __future__ import annotations

import os
from pathlib import Path

# Bucket names stay those of the earlier AWS design so its users find their data where they expect it.
RAW_PAPERS_BUCKET = "llm-research-papers"
CODE_BUCKET = "papers-code-artifacts"
RESULTS_BUCKET = "papers-test-outputs"
DATASETS_BUCKET = "datasets-for-all-papers"
# Parquet outputs of the assets; not part of the earlier design, so it gets a name of its own.
IO_BUCKET = "annapurna-dagster-io"

INDEX_NAME = "research-papers-v2"
REQUEST_QUEUE = "code-evaluation.fifo"


def annapurna_home() -> Path:
    return Path(os.environ.get("ANNAPURNA_HOME", "./.annapurna")).expanduser().resolve()


def profile() -> str:
    value = os.environ.get("ANNAPURNA_PROFILE", "local").strip().lower()
    if value not in ("local", "aws"):
        raise ValueError(f"ANNAPURNA_PROFILE must be 'local' or 'aws', not {value!r}")
    return value


def sources_mode() -> str:
    value = os.environ.get("ANNAPURNA_SOURCES", "demo").strip().lower()
    if value not in ("demo", "live"):
        raise ValueError(f"ANNAPURNA_SOURCES must be 'demo' or 'live', not {value!r}")
    return value
