"""`load_dataset` for all seven datasets, from the local cache and from the dataset store, on small
files written in each dataset's real format (the writers live in test_dataset_formats)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_step.runtime import dataset_loader as dl
from tests.test_dataset_formats import _idx_bytes, _write_cifar_batch, _write_imdb


def write_all(cache: Path) -> None:
    """Each dataset under cache/<name>/ in its published layout, small but with 64+ examples."""
    rng = np.random.default_rng(7)
    c10 = cache / "cifar10" / "cifar-10-batches-py"
    for i in range(1, 6):
        _write_cifar_batch(c10 / f"data_batch_{i}", rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8),
                           [int(x) for x in rng.integers(0, 10, 16)], b"labels")
    _write_cifar_batch(c10 / "test_batch", rng.integers(0, 256, (70, 3, 32, 32), dtype=np.uint8),
                       [int(x) for x in rng.integers(0, 10, 70)], b"labels")
    c100 = cache / "cifar100" / "cifar-100-python"
    c100.mkdir(parents=True)
    for split, n in (("train", 80), ("test", 70)):
        (c100 / split).write_bytes(pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                                 b"fine_labels": [int(x) for x in rng.integers(0, 100, n)]}, protocol=2))
    for name in ("mnist", "fashion_mnist"):
        folder = cache / name
        folder.mkdir()
        for prefix, n in (("train", 80), ("t10k", 70)):
            (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
                gzip.compress(_idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))))
            (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
                gzip.compress(_idx_bytes(rng.integers(0, 10, n).astype(np.uint8))))
    imdb = cache / "imdb"
    _write_imdb(imdb)
    for split in ("train", "test"):  # enough reviews for one batch of 64
        for i in range(40):
            for label, text in (("pos", "great fun, loved it"), ("neg", "dull and awful")):
                (imdb / "aclImdb" / split / label / f"{100 + i}_5.txt").write_text(f"{text} {i}")
    wiki = cache / "wikitext2" / "wikitext-2-raw"
    wiki.mkdir(parents=True)
    words = " ".join(f"w{i % 37}" for i in range(3000))
    for split in ("train", "valid", "test"):
        (wiki / f"wiki.{split}.raw").write_text(f" = Heading = \n {words} \n")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    write_all(root)
    monkeypatch.setenv("DATASET_CACHE_DIR", str(root))
    monkeypatch.delenv("DATASET_STORE_URI", raising=False)
    return root


@pytest.mark.parametrize("name,shape,classes", [("cifar10", [3, 32, 32], 10), ("cifar100", [3, 32, 32], 100),
                                                ("mnist", [1, 28, 28], 10), ("fashion_mnist", [1, 28, 28], 10)])
def test_image_datasets(cache: Path, name: str, shape: list[int], classes: int) -> None:
    train, test, info = dl.load_dataset(name, batch_size=32)
    assert info["kind"] == "image" and info["input_shape"] == shape and info["num_classes"] == classes
    x, y = next(iter(train))
    assert x.shape == (32, *shape) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -3.5 < float(x.mean()) < 3.5 and float(x.std()) > 0.5  # normalised, not 0..255
    assert info["n_test"] == 70 and len(test) == 70 // 32


def test_imdb_and_wikitext(cache: Path) -> None:
    train, _, info = dl.load_dataset("imdb", batch_size=16, seq_len=12)
    x, y = next(iter(train))
    assert info["kind"] == "text" and info["num_classes"] == 2 and x.shape == (16, 12)
    assert int(x.max()) < info["vocab_size"] and set(y.tolist()) <= {0, 1}
    train, test, info = dl.load_dataset("wikitext2", batch_size=8, seq_len=20)
    x, y = next(iter(test))
    assert info["kind"] == "sequence" and x.shape == y.shape == (8, 20)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next tokens


def test_synthetic_still_works_without_any_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASET_CACHE_DIR", str(tmp_path / "empty"))
    _, _, info = dl.load_dataset("synthetic", kind="text", batch_size=8, seq_len=16)
    assert info["kind"] == "text" and info["seq_len"] == 16


def test_missing_dataset_is_unavailable_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASET_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("DATASET_STORE_URI", raising=False)
    with pytest.raises(dl.DatasetUnavailable, match="not in the local cache"):
        dl.load_dataset("cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        dl.load_dataset("imagenet")


def _pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buf.getvalue()


def test_dataset_store_fills_the_cache(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "objects" / "datasets-for-all-papers"
    (store / "mnist").mkdir(parents=True)
    (store / "mnist" / "mnist.tar.gz").write_bytes(_pack(cache / "mnist"))
    fresh = tmp_path / "fresh-cache"
    monkeypatch.setenv("DATASET_CACHE_DIR", str(fresh))
    monkeypatch.setenv("DATASET_STORE_URI", store.as_uri())
    _, _, info = dl.load_dataset("mnist", batch_size=32)
    assert info["n_train"] == 80 and (fresh / "mnist" / dl.COMPLETE_MARKER).is_file()
    with pytest.raises(dl.DatasetUnavailable, match="not in the dataset store"):
        dl.load_dataset("cifar10")


def test_store_archive_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "imdb").mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        data = b"pwned"
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    (store / "imdb" / "imdb.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(dl.DatasetUnavailable, match="outside its folder"):
        dl.ensure_cached("imdb", tmp_path / "cache", store.as_uri())
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / "imdb").exists()


def test_sandboxed_program_reads_the_cache_read_only(cache: Path, tmp_path: Path) -> None:
    from neuron_step.pipes_client import NeuronPipesClient, job_for_code

    code = ("import json, os\nfrom dataset_loader import load_dataset\n"
            "train, test, info = load_dataset('fashion_mnist', batch_size=16)\n"
            "x, y = next(iter(train))\n"
            "try:\n    open(os.path.join(os.environ['DATASET_CACHE_DIR'], 'fashion_mnist', 'poison'), 'w')\n"
            "    wrote = 1\nexcept OSError:\n    wrote = 0\n"
            "print('METRICS: ' + json.dumps({'n_train': info['n_train'], 'batch': list(x.shape), 'wrote': wrote}))\n")
    client = NeuronPipesClient(slots=1, timeout_s=60, work_root=str(tmp_path / "jobs"), dataset_cache_dir=str(cache))
    run = client.run_one(None, job_for_code(code, dataset="fashion_mnist"), slot=0)
    assert run.status == "passed", (run.error, run.stderr[-800:])
    assert run.final_metrics == {"n_train": 80, "batch": [16, 1, 28, 28], "wrote": 0}
    assert not (cache / "fashion_mnist" / "poison").exists()
