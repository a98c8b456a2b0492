"""Optional: a program run's metrics as CloudWatch custom metrics (namespace `Trainium/Training`).

Dimensions are those of the earlier design's dashboards: PaperId, TrainingJobName, InstanceType.
Every numeric value of every `METRICS:` line becomes a datum; `step` and `epoch` say where in
training a line was written and are stored as a datum's position, not as metrics of their own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

NAMESPACE = "Trainium/Training"
# PutMetricData accepts at most 1000 data per call; staying well below keeps requests small.
MAX_DATA_PER_CALL = 500
POSITION_KEYS = ("step", "epoch")
_UNITS = {"wall_s": "Seconds", "duration_s": "Seconds", "time_s": "Seconds", "accuracy": "None"}


def dimensions(paper_id: str, job_name: str, instance_type: str) -> list[dict[str, str]]:
    # CloudWatch rejects empty dimension values; 1024 characters is its limit per value.
    return [{"Name": name, "Value": (value or "unknown")[:1024]}
            for name, value in (("PaperId", paper_id), ("TrainingJobName", job_name), ("InstanceType", instance_type))]


def metric_data(metrics: list[dict[str, Any]], paper_id: str, job_name: str, instance_type: str,
                ended_at: datetime, wall_s: float | None = None, passed: bool | None = None) -> list[dict[str, Any]]:
    """MetricData entries for PutMetricData (pure, so it tests without AWS). Lines are spread one
    second apart ending at `ended_at`, keeping their order visible in a graph; non-finite and
    non-numeric values are dropped (CloudWatch refuses NaN and infinity)."""
    dims = dimensions(paper_id, job_name, instance_type)
    data: list[dict[str, Any]] = []
    for i, line in enumerate(metrics):
        timestamp = ended_at - timedelta(seconds=len(metrics) - 1 - i)
        for key, value in line.items():
            if key in POSITION_KEYS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            data.append({"MetricName": str(key)[:255], "Dimensions": dims, "Timestamp": timestamp,
                         "Value": float(value), "Unit": _UNITS.get(key, "None")})
    if wall_s is not None:
        data.append({"MetricName": "WallSeconds", "Dimensions": dims, "Timestamp": ended_at,
                     "Value": float(wall_s), "Unit": "Seconds"})
    if passed is not None:
        data.append({"MetricName": "Passed", "Dimensions": dims, "Timestamp": ended_at,
                     "Value": 1.0 if passed else 0.0, "Unit": "Count"})
    return data


def chunks(data: list[dict[str, Any]], size: int = MAX_DATA_PER_CALL) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class CloudWatchMetrics(dg.ConfigurableResource):
    """Publishes run metrics; `enabled=False` (the default) makes it a no-op, so the local profile
    needs no AWS."""

    enabled: bool = False
    region_name: str | None = None
    endpoint_url: str | None = None
    namespace: str = NAMESPACE

    def client(self) -> Any:
        import boto3  # noqa: PLC0415 - only when enabled

        return boto3.client("cloudwatch", region_name=self.region_name, endpoint_url=self.endpoint_url)

    def publish(self, metrics: list[dict[str, Any]], paper_id: str, job_name: str, instance_type: str,
                wall_s: float | None = None, passed: bool | None = None, client: Any = None) -> int:
        """Put every datum; returns how many were sent."""
        if not self.enabled:
            return 0
        data = metric_data(metrics, paper_id, job_name, instance_type, datetime.now(UTC), wall_s, passed)
        cw = client or self.client()
        for batch in chunks(data):
            cw.put_metric_data(Namespace=self.namespace, MetricData=batch)
        return len(data)
