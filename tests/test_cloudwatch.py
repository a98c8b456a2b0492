"""Run metrics to CloudWatch (namespace Trainium/Training) against moto's server with real boto3."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from neuron_step.cloudwatch import NAMESPACE, CloudWatchMetrics, chunks, metric_data
from tests.local_moto import REGION, moto_server


@pytest.fixture
def cw_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server(monkeypatch) as endpoint:
        yield endpoint


LINES = [{"step": 1, "loss": 2.5, "accuracy": 0.1}, {"step": 2, "loss": 1.5, "accuracy": 0.4, "note": "x"},
         {"epoch": 1, "loss": float("nan"), "converged": True, "accuracy": 0.6}]


def test_metric_data_keeps_finite_numbers_in_line_order() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    data = metric_data(LINES, "arxiv-2401.00001", "run-abc", "trn1.2xlarge", end, wall_s=12.0, passed=True)
    names = [d["MetricName"] for d in data]
    # step/epoch are positions, "note" is text, True is not a measurement, NaN is refused by CloudWatch.
    assert names == ["loss", "accuracy", "loss", "accuracy", "accuracy", "WallSeconds", "Passed"]
    assert [d["Value"] for d in data if d["MetricName"] == "accuracy"] == [0.1, 0.4, 0.6]
    stamps = [d["Timestamp"] for d in data if d["MetricName"] == "accuracy"]
    assert stamps == [end - timedelta(seconds=2), end - timedelta(seconds=1), end]
    assert data[0]["Dimensions"] == [{"Name": "PaperId", "Value": "arxiv-2401.00001"},
                                     {"Name": "TrainingJobName", "Value": "run-abc"},
                                     {"Name": "InstanceType", "Value": "trn1.2xlarge"}]
    assert [len(c) for c in chunks(list(range(1201)))] == [500, 500, 201]


def test_publish_to_cloudwatch_and_read_back(cw_endpoint: str) -> None:
    resource = CloudWatchMetrics(enabled=True, region_name=REGION, endpoint_url=cw_endpoint)
    sent = resource.publish(LINES, paper_id="arxiv-2401.00001", job_name="run-abc", instance_type="trn1.2xlarge",
                            wall_s=12.0, passed=True)
    assert sent == 7
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=cw_endpoint)
    listed = cw.list_metrics(Namespace=NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in listed} == {"loss", "accuracy", "WallSeconds", "Passed"}
    dims = [{"Name": "PaperId", "Value": "arxiv-2401.00001"}, {"Name": "TrainingJobName", "Value": "run-abc"},
            {"Name": "InstanceType", "Value": "trn1.2xlarge"}]
    now = datetime.now(UTC)
    stats = cw.get_metric_statistics(Namespace=NAMESPACE, MetricName="accuracy", Dimensions=dims,
                                     StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=5),
                                     Period=3600, Statistics=["Maximum", "SampleCount"])["Datapoints"]
    assert sum(p["SampleCount"] for p in stats) == 3
    assert max(p["Maximum"] for p in stats) == pytest.approx(0.6)


def test_disabled_publisher_sends_nothing(cw_endpoint: str) -> None:
    sent = CloudWatchMetrics(enabled=False, region_name=REGION, endpoint_url=cw_endpoint).publish(
        LINES, paper_id="p", job_name="j", instance_type="cpu")
    assert sent == 0
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=cw_endpoint)
    assert cw.list_metrics(Namespace=NAMESPACE)["Metrics"] == []


def test_pipes_client_publishes_each_runs_metrics(cw_endpoint: str, tmp_path: Path) -> None:
    from neuron_step.pipes_client import NeuronPipesClient, job_for_code

    client = NeuronPipesClient(slots=1, timeout_s=60, work_root=str(tmp_path / "jobs"), cloudwatch_enabled=True,
                               region_name=REGION, aws_endpoint_url=cw_endpoint)
    code = "import json\nfor i in range(3):\n    print('METRICS: ' + json.dumps({'step': i, 'loss': 3 - i}))\n"
    runs = list(client.run_programs(None, [job_for_code(code, paper_id="cw-paper")]))
    assert runs[0].status == "passed"
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=cw_endpoint)
    metrics = cw.list_metrics(Namespace=NAMESPACE, Dimensions=[{"Name": "PaperId", "Value": "cw-paper"}])["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"loss", "WallSeconds", "Passed"}
    dims = {d["Name"]: d["Value"] for d in metrics[0]["Dimensions"]}
    assert dims["InstanceType"] == "local-cpu" and dims["TrainingJobName"].startswith("cw-paper-")
