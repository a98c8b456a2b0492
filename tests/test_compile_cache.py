"""The Neuron compile cache: a local folder programs may write from inside the sandbox, synced with S3
(moto's server) by the executor."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from neuron_step.compile_cache import pull, push
from neuron_step.executor_service import default_runner
from neuron_step.transports import Bundle, execute_bundle
from tests.local_moto import REGION, moto_server

BUCKET = "papers-test-outputs"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    with moto_server(monkeypatch) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_push_and_pull_move_only_missing_files(s3: object, tmp_path: Path) -> None:
    host_a = tmp_path / "a"
    (host_a / "neuronxcc-2.24" / "MODULE_1").mkdir(parents=True)
    (host_a / "neuronxcc-2.24" / "MODULE_1" / "model.neff").write_bytes(b"neff")
    (host_a / "neuronxcc-2.24" / "MODULE_1" / "model.lock").write_bytes(b"")
    uri = f"s3://{BUCKET}/neuron-compile-cache"
    assert push(s3, uri, host_a) == 1  # lock files stay local
    assert push(s3, uri, host_a) == 0
    host_b = tmp_path / "b"
    assert pull(s3, uri, host_b) == 1
    assert (host_b / "neuronxcc-2.24" / "MODULE_1" / "model.neff").read_bytes() == b"neff"
    assert pull(s3, uri, host_b) == 0


def test_program_compiles_into_the_cache_and_the_executor_pushes_it(s3: object, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "neuron-cache"
    monkeypatch.setenv("NEURON_COMPILE_CACHE_URL", str(cache))
    monkeypatch.setenv("ANNAPURNA_COMPILE_CACHE_S3", f"s3://{BUCKET}/neuron-compile-cache")
    code = ("import os, pathlib\nroot = pathlib.Path(os.environ['NEURON_COMPILE_CACHE_URL'])\n"
            "(root / 'MODULE_7').mkdir()\n(root / 'MODULE_7' / 'model.neff').write_bytes(b'compiled')\n"
            "print('METRICS: {\"loss\": 1}')\n")
    bundle = Bundle(run_name="p-cache", sha256=hashlib.sha256(code.encode()).hexdigest(),
                    files={"program.py": code.encode()}, argv=["{python}", "program.py"], timeout_s=60)
    outcome = execute_bundle(bundle, tmp_path / "jobs", default_runner(), sys.executable)
    assert outcome.status == "passed", outcome.stderr
    assert (cache / "MODULE_7" / "model.neff").read_bytes() == b"compiled"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]  # type: ignore[attr-defined]
    assert keys == ["neuron-compile-cache/MODULE_7/model.neff"]
