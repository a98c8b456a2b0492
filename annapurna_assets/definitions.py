"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here."""

from __future__ import annotations

import dagster as dg

from annapurna_assets import schedules, sensors
from annapurna_assets.datasets import datasets
from annapurna_assets.generated_code import generated_code
from annapurna_assets.judgments import judgments
from annapurna_assets.papers import papers
from annapurna_assets.resources import build_resources
from annapurna_assets.test_results import test_results

PIPELINE_ASSETS = [papers, judgments, generated_code, test_results]

pipeline_job = dg.define_asset_job(
    "pipeline",
    selection=dg.AssetSelection.assets(*PIPELINE_ASSETS),
    description="papers -> judgments -> generated_code -> test_results for one venue/year.",
)

defs = dg.Definitions(
    # judgments and generated_code follow their upstream by themselves (sensors.with_automation).
    assets=[*sensors.with_automation(PIPELINE_ASSETS), datasets],
    jobs=[pipeline_job, *sensors.JOBS, *schedules.JOBS],
    sensors=sensors.SENSORS,
    schedules=schedules.SCHEDULES,
    resources=build_resources(),
)
