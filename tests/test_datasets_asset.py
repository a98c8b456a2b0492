"""The `datasets` asset: staging from the local cache, downloading from a mirror on 127.0.0.1, and a
clear error per dataset that is nowhere to be had; what it stores is what `dataset_loader` reads."""

from __future__ import annotations

import functools
import gzip
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from annapurna_assets.datasets import DatasetsConfig, datasets, pack
from annapurna_resources.object_store.local import LocalObjectStore
from annapurna_resources.settings import DATASETS_BUCKET
from neuron_step.runtime import dataset_loader as dl
from tests.test_dataset_formats import _idx_bytes, _write_cifar_batch


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[str]:
    """Serves `<name>/<file>` like a publisher's mirror: here only Fashion-MNIST's four IDX files."""
    root = tmp_path / "mirror"
    folder = root / "fashion_mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for prefix, n in (("train", 80), ("t10k", 70)):
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx_bytes(rng.integers(0, 10, n).astype(np.uint8))))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def materialize(store: LocalObjectStore, **config: object) -> dict:
    result = dg.materialize([datasets], resources={"store": store},
                            run_config={"ops": {"datasets": {"config": config}}})
    assert result.success
    mat = result.get_asset_materialization_events()[0].event_specific_data.materialization
    return {k: v.value for k, v in mat.metadata.items()}


def test_stages_from_cache_and_mirror_and_reports_what_it_cannot(tmp_path: Path, mirror: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    rng = np.random.default_rng(1)
    c10 = cache / "cifar10" / "cifar-10-batches-py"
    for i in range(1, 6):
        _write_cifar_batch(c10 / f"data_batch_{i}", rng.integers(0, 256, (14, 3, 32, 32), dtype=np.uint8),
                           [1] * 14, b"labels")
    _write_cifar_batch(c10 / "test_batch", rng.integers(0, 256, (66, 3, 32, 32), dtype=np.uint8), [2] * 66, b"labels")
    monkeypatch.setenv("DATASET_CACHE_DIR", str(cache))
    store = LocalObjectStore(root=str(tmp_path / "objects"))

    meta = materialize(store, names=["cifar10", "fashion_mnist", "imdb"], mirror=mirror)
    assert meta["staged"] == 2 and meta["errors"] == 1
    table = meta["datasets"]
    assert "imdb" in table and "download failed" in table and "HTTP Error 404" in table
    assert store.exists(DATASETS_BUCKET, "cifar10/cifar10.tar.gz")
    assert store.exists(DATASETS_BUCKET, "fashion_mnist/fashion_mnist.tar.gz")

    # What was staged is what a host's loader fetches and reads.
    monkeypatch.setenv("DATASET_CACHE_DIR", str(tmp_path / "host-cache"))
    monkeypatch.setenv("DATASET_STORE_URI", (tmp_path / "objects" / DATASETS_BUCKET).as_uri())
    assert dl.load_dataset("cifar10", batch_size=32).info["n_train"] == 70
    assert dl.load_dataset("fashion_mnist", batch_size=32).info["n_test"] == 70

    again = materialize(store, names=["cifar10", "fashion_mnist"], download=False)
    assert again["present"] == 2 and again["staged"] == 0


def test_offline_every_missing_dataset_gets_its_own_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASET_CACHE_DIR", str(tmp_path / "empty"))
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    # A mirror on a closed local port stands for "no network".
    meta = materialize(store, names=["mnist", "wikitext2", "nope"], mirror="http://127.0.0.1:9")
    assert meta["errors"] == 3 and meta["staged"] == 0
    for name in ("mnist", "wikitext2", "nope"):
        assert name in meta["datasets"]
    assert "Connection refused" in meta["datasets"] or "URLError" in meta["datasets"]


def test_pack_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "sub" / "x.txt").write_text("x")
    first = pack(tmp_path / "a")
    (tmp_path / "a" / "sub" / "x.txt").touch()
    assert pack(tmp_path / "a") == first
    assert DatasetsConfig().names == list(dl.STANDARD)
