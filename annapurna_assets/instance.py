"""The local Dagster instance the CLI, the demo and `make ui` share: `$DAGSTER_HOME`, by default
`$ANNAPURNA_HOME/dagster`, configured by the repository's dagster.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from annapurna_resources.settings import annapurna_home

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


def ensure_dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or annapurna_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        if REPO_DAGSTER_YAML.exists():
            shutil.copy(REPO_DAGSTER_YAML, target)
        else:
            target.write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
