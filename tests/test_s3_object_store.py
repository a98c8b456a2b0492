"""S3ObjectStore against moto's S3 server on 127.0.0.1, through real boto3 HTTP calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from dagster_aws.s3 import S3Resource

from annapurna_resources.object_store import ObjectExistsError
from annapurna_resources.object_store.s3 import S3ObjectStore
from annapurna_resources.settings import CODE_BUCKET, RAW_PAPERS_BUCKET


@contextmanager
def moto_s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start moto's standalone server on an ephemeral port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # Dummy credentials so botocore signs requests; they never leave 127.0.0.1.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are process-wide: start from an empty S3 whatever ran before in this process.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    try:
        yield endpoint
    finally:
        server.stop()


def make_store(endpoint: str, **kwargs: object) -> S3ObjectStore:
    return S3ObjectStore(
        s3=S3Resource(endpoint_url=endpoint, region_name="us-east-1"), create_buckets=True, **kwargs
    )


@pytest.fixture(scope="module")
def _moto_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp, moto_s3_server(mp) as endpoint:
        yield endpoint


@pytest.fixture
def s3_endpoint(_moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # One server per module (it takes seconds to start), an empty S3 per test.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    requests.post(f"{_moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    return _moto_endpoint


def test_put_get_exists_roundtrip(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint)
    uri = store.put(CODE_BUCKET, "code/p1/main.py", b"print(1)\n", "text/x-python")
    assert uri == f"s3://{CODE_BUCKET}/code/p1/main.py"
    assert store.get(CODE_BUCKET, "code/p1/main.py") == b"print(1)\n"
    assert store.get_text(CODE_BUCKET, "code/p1/main.py") == "print(1)\n"
    assert store.exists(CODE_BUCKET, "code/p1/main.py")
    assert not store.exists(CODE_BUCKET, "code/p1/other.py")
    with pytest.raises(KeyError):
        store.get(CODE_BUCKET, "code/p1/other.py")
    # Derived buckets may be rewritten.
    store.put(CODE_BUCKET, "code/p1/main.py", b"print(2)\n")
    assert store.get(CODE_BUCKET, "code/p1/main.py") == b"print(2)\n"
    head = store.s3.get_client().head_object(Bucket=CODE_BUCKET, Key="code/p1/main.py")
    assert head["ContentLength"] == len(b"print(2)\n")


def test_put_once_never_overwrites(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint)
    key = "papers/arxiv/2024/arxiv-2401.00001.pdf"
    assert store.put_once(RAW_PAPERS_BUCKET, key, b"%PDF-1.4 first") is True
    # The server honoured If-None-Match, so the atomic path was taken.
    assert store._conditional_puts is True
    assert store.put_once(RAW_PAPERS_BUCKET, key, b"%PDF-1.4 first") is False
    with pytest.raises(ObjectExistsError):
        store.put_once(RAW_PAPERS_BUCKET, key, b"%PDF-1.4 second")
    # `put` on the raw-papers bucket is write-once too.
    with pytest.raises(ObjectExistsError):
        store.put(RAW_PAPERS_BUCKET, key, b"%PDF-1.4 third")
    assert store.get(RAW_PAPERS_BUCKET, key) == b"%PDF-1.4 first"


def test_put_once_race_has_one_winner(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint)
    store.put_once(RAW_PAPERS_BUCKET, "warmup", b"x")  # create the bucket before the race
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        try:
            result = "wrote" if store.put_once(RAW_PAPERS_BUCKET, "race/key.json", f"{i}".encode()) else "same"
        except ObjectExistsError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("wrote") == 1
    assert outcomes.count("refused") == 5
    winner = store.get(RAW_PAPERS_BUCKET, "race/key.json").decode()
    assert winner in {str(i) for i in range(6)}


def test_put_once_falls_back_to_head_and_compare(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint)
    # As if the server had answered NotImplemented to a conditional put.
    store._conditional_puts = False
    assert store.put_once(RAW_PAPERS_BUCKET, "a/b.json", b"{}") is True
    assert store.put_once(RAW_PAPERS_BUCKET, "a/b.json", b"{}") is False
    with pytest.raises(ObjectExistsError):
        store.put_once(RAW_PAPERS_BUCKET, "a/b.json", b"{\"x\": 1}")
    assert store.get(RAW_PAPERS_BUCKET, "a/b.json") == b"{}"


def test_list_objects_prefix_start_after_and_pagination(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint)
    keys = [f"papers/iclr/2025/p{i:04d}.json" for i in range(1105)]  # more than one 1000-key page
    client = store._s3(RAW_PAPERS_BUCKET)
    for key in keys:
        client.put_object(Bucket=RAW_PAPERS_BUCKET, Key=key, Body=b"{}")
    client.put_object(Bucket=RAW_PAPERS_BUCKET, Key="papers/iclr/2024/old.json", Body=b"{}")
    client.put_object(Bucket=RAW_PAPERS_BUCKET, Key="papers/mlsys/2025/x.json", Body=b"{}")

    listed = list(store.list_objects(RAW_PAPERS_BUCKET, "papers/iclr/2025/"))
    assert [o.key for o in listed] == keys
    assert all(o.size == 2 and o.last_modified.tzinfo is not None for o in listed)
    after = store.list_keys(RAW_PAPERS_BUCKET, "papers/iclr/")
    assert after[0] == "papers/iclr/2024/old.json" and len(after) == 1106
    tail = [o.key for o in store.list_objects(RAW_PAPERS_BUCKET, "papers/", start_after=keys[1100])]
    assert tail == [*keys[1101:], "papers/mlsys/2025/x.json"]
    assert list(store.list_objects(RAW_PAPERS_BUCKET, "nothing/")) == []


def test_bucket_map_and_invalid_keys(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint, bucket_map={CODE_BUCKET: "acme-code"})
    assert store.put(CODE_BUCKET, "k.txt", b"v") == "s3://acme-code/k.txt"
    assert store.s3.get_client().get_object(Bucket="acme-code", Key="k.txt")["Body"].read() == b"v"
    for bad in ("", "/abs", "a/../b"):
        with pytest.raises(ValueError):
            store.put(CODE_BUCKET, bad, b"v")
