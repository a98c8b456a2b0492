"""The dataset readers against small files written in each dataset's real on-disk format."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from neuron_step.runtime import dataset_formats as fmt


def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], label_key: bytes) -> None:
    # The published batches are Python 2 pickles: bytes keys once read with encoding="bytes", protocol 2.
    batch = {b"batch_label": b"testing batch", b"data": images.reshape(len(images), -1),
             label_key: labels, b"filenames": [b"img%d.png" % i for i in range(len(labels))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))


def _random_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def test_cifar10_reads_five_train_batches_and_test_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    written = []
    for i in range(1, 6):
        images = _random_images(rng, 3)
        labels = [int(x) for x in rng.integers(0, 10, size=3)]
        _write_cifar_batch(folder / f"data_batch_{i}", images, labels, b"labels")
        written.append((images, labels))
    test_images = _random_images(rng, 2)
    _write_cifar_batch(folder / "test_batch", test_images, [7, 9], b"labels")

    images, labels = fmt.read_cifar(tmp_path, "cifar10", train=True)
    assert images.shape == (15, 3, 32, 32) and images.dtype == np.uint8
    # Order and channel layout preserved: batch 1 first, row-major (channel, row, column) as published.
    np.testing.assert_array_equal(images[:3], written[0][0])
    np.testing.assert_array_equal(images[12:], written[4][0])
    assert labels.tolist() == sum((lbl for _, lbl in written), [])

    images, labels = fmt.read_cifar(tmp_path, "cifar10", train=False)
    np.testing.assert_array_equal(images, test_images)
    assert labels.tolist() == [7, 9]


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    for split, fine in (("train", [99, 3, 42]), ("test", [0])):
        batch = {b"data": _random_images(rng, len(fine)).reshape(len(fine), -1), b"fine_labels": fine,
                 b"coarse_labels": [1] * len(fine)}
        (folder).mkdir(exist_ok=True)
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    _, labels = fmt.read_cifar(tmp_path, "cifar100", train=True)
    assert labels.tolist() == [99, 3, 42]
    _, labels = fmt.read_cifar(folder, "cifar100", train=False)  # the unpacked folder itself also works
    assert labels.tolist() == [0]


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_pickle_that_references_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps({b"data": _RunsCode(), b"fine_labels": [1]}, protocol=2))
    with pytest.raises(fmt.DatasetFormatError, match="only numpy arrays"):
        fmt.read_cifar(tmp_path, "cifar100", train=True)


def test_cifar_truncated_or_missing_batches_are_format_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batch(folder / "test_batch", _random_images(np.random.default_rng(2), 2), [1, 2], b"labels")
    with pytest.raises(fmt.DatasetFormatError, match="data_batch_1"):
        fmt.read_cifar(tmp_path, "cifar10", train=True)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(fmt.DatasetFormatError, match="not a readable pickle"):
        fmt.read_cifar(tmp_path, "cifar10", train=False)


def _idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype("uint8"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    code = codes[array.dtype]
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.parametrize("name,subfolder", [("mnist", "MNIST/raw"), ("fashion_mnist", "")])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_datasets_plain_and_gzipped(tmp_path: Path, name: str, subfolder: str, gz: bool) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / subfolder if subfolder else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": np.array([0, 9, 4, 4, 1], dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": np.array([3, 8], dtype=np.uint8)}
    for stem, array in arrays.items():
        data = _idx_bytes(array)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)

    images, labels = fmt.read_mnist_like(tmp_path, name, train=True)
    assert images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(images[:, 0], arrays["train-images-idx3-ubyte"])
    assert labels.tolist() == [0, 9, 4, 4, 1]
    _, labels = fmt.read_mnist_like(tmp_path, name, train=False)
    assert labels.tolist() == [3, 8]


def test_idx_wider_dtypes_are_big_endian() -> None:
    values = np.array([[1, -2], [70000, 3]], dtype=">i4")
    parsed = fmt.parse_idx(_idx_bytes(values))
    assert parsed.tolist() == [[1, -2], [70000, 3]]
    floats = np.array([0.5, -1.25], dtype=">f4")
    assert fmt.parse_idx(_idx_bytes(floats)).tolist() == [0.5, -1.25]


def test_idx_corrupt_files_are_format_errors(tmp_path: Path) -> None:
    good = _idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(fmt.DatasetFormatError, match="bad magic"):
        fmt.parse_idx(b"\x01\x02" + good[2:])
    with pytest.raises(fmt.DatasetFormatError, match="data bytes"):
        fmt.parse_idx(good[:-10])
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(good)[:20])
    with pytest.raises(fmt.DatasetFormatError, match="corrupt gzip"):
        fmt.read_idx(path)
    with pytest.raises(fmt.DatasetFormatError, match="t10k-images"):
        fmt.read_mnist_like(tmp_path / "empty", "mnist", train=False)


def _write_imdb(root: Path) -> None:
    reviews = {
        ("train", "pos", "0_9.txt"): "A great film.<br /><br />Great acting, great story!",
        ("train", "pos", "1_8.txt"): "Loved it. Great.",
        ("train", "neg", "0_2.txt"): "Awful. I didn't like it at all.",
        ("test", "pos", "0_10.txt"): "Great, simply great.",
        ("test", "neg", "0_1.txt"): "Unwatchable zyzzyva.",
    }
    for (split, label, name), text in reviews.items():
        path = root / "aclImdb" / split / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_tokenizer_drops_html_breaks_and_keeps_contractions() -> None:
    assert fmt.tokenize("Great acting!<br /><br />I didn't LIKE it.") == [
        "great", "acting", "!", "i", "didn't", "like", "it", "."]


def test_imdb_folders_encode_with_train_vocab(tmp_path: Path) -> None:
    _write_imdb(tmp_path)
    texts, labels = fmt.read_imdb(tmp_path, train=True)
    assert labels.tolist() == [0, 1, 1]  # neg first, then pos, files sorted
    assert texts[0].startswith("Awful")

    data = fmt.load_imdb(tmp_path, max_len=6)
    vocab = data["vocab"]
    # By falling train frequency right after the specials: "." 5 times, "great" 4 times.
    assert vocab.itos[:4] == [fmt.PAD, fmt.UNK, ".", "great"]
    ids, labels = data["test"]
    assert ids.shape == (2, 6) and labels.tolist() == [0, 1]
    # "zyzzyva" occurs only in test: it must map to <unk>, never enter the vocabulary.
    assert "zyzzyva" not in vocab.stoi
    unwatchable_row = ids[0].tolist()
    assert unwatchable_row[:3] == [vocab.stoi[fmt.UNK], vocab.stoi[fmt.UNK], vocab.stoi["."]]
    assert unwatchable_row[3:] == [vocab.stoi[fmt.PAD]] * 3


def test_imdb_missing_label_folder_is_format_error(tmp_path: Path) -> None:
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(fmt.DatasetFormatError, match="neg"):
        fmt.read_imdb(tmp_path, train=True)


def test_wikitext2_raw_files_become_token_streams(tmp_path: Path) -> None:
    folder = tmp_path / "wikitext-2-raw"
    folder.mkdir()
    (folder / "wiki.train.raw").write_text(" \n = Valkyria Chronicles = \n \n the game the game .\n", encoding="utf-8")
    (folder / "wiki.valid.raw").write_text(" the unseen game \n", encoding="utf-8")
    (folder / "wiki.test.raw").write_text(" = = \n", encoding="utf-8")
    data = fmt.load_wikitext2(tmp_path)
    vocab = data["vocab"]
    assert vocab.itos[:2] == [fmt.UNK, fmt.EOS]
    decoded = [vocab.itos[i] for i in data["train"]]
    assert decoded == ["=", "Valkyria", "Chronicles", "=", "<eos>", "the", "game", "the", "game", ".", "<eos>"]
    assert [vocab.itos[i] for i in data["valid"]] == ["the", "<unk>", "game", "<eos>"]
    assert data["train"].dtype == np.int64

    inputs, targets = fmt.lm_windows(data["train"], seq_len=4)
    assert inputs.shape == targets.shape == (2, 4)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    assert targets[1, -1] == data["train"][8]


def test_wikitext2_missing_split_is_format_error(tmp_path: Path) -> None:
    (tmp_path / "wiki.train.raw").write_text("a b\n", encoding="utf-8")
    with pytest.raises(fmt.DatasetFormatError, match="wiki.valid.raw"):
        fmt.load_wikitext2(tmp_path)


def test_formats_module_is_standalone() -> None:
    # It is shipped to the host without the annapurna packages: importing them there would fail.
    source = Path(fmt.__file__).read_text(encoding="utf-8")
    assert "annapurna" not in "".join(line for line in source.splitlines() if line.startswith(("import", "from")))
