"""moto's standalone server on 127.0.0.1 for the neuron-step tests: real boto3 over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@contextmanager
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # Fake credentials, so nothing on this machine (or a real profile) is ever used.
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    endpoint = f"http://{host}:{port}"
    # moto's backends are process-wide: without a reset a test sees the previous test's resources.
    httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
    try:
        yield endpoint
    finally:
        server.stop()
