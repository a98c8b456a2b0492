"""`load_dataset(name, batch_size=...)` for generated programs: returns (train, test, info) where
train and test are PyTorch DataLoaders with fixed batch shapes (drop_last) and info describes them
(`kind`, `input_shape`/`num_classes` for images, `seq_len`/`vocab_size`/`num_classes` for text,
`seq_len`/`vocab_size` for language modelling: the same keys `synthetic` uses).

`synthetic` is generated here (image-, text- and sequence-shaped variants, learnable, seeded). The
standard datasets (`cifar10`, `cifar100`, `mnist`, `fashion_mnist`, `imdb`, `wikitext2`) are read in
their published on-disk formats (see dataset_formats.py) from the local cache
`DATASET_CACHE_DIR/<name>/`; when missing there, they are fetched from the dataset store
(`DATASET_STORE_URI`: `s3://datasets-for-all-papers` or `file:///path/to/that/bucket`, holding
`<name>/<name>.tar.gz`) into the cache. Inside the sandbox there is no network: the executor stages
a program's dataset into the cache (read-only there) before the program starts.

Shipped to the host beside the program: standard library, numpy and torch only.
"""

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

try:  # beside this file in a job folder
    import dataset_formats as formats
except ImportError:  # imported from the package by the executor
    from neuron_step.runtime import dataset_formats as formats

DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "imdb", "wikitext2", "synthetic")
STANDARD = DATASETS[:-1]
DEFAULT_STORE_URI = "s3://datasets-for-all-papers"
COMPLETE_MARKER = ".complete"
# Per-channel statistics of the training sets, the usual normalisation for each.
_NORMALIZE = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}


class DatasetUnavailable(Exception):
    """The dataset is not staged on this host (and could not be fetched)."""


class Loaders(NamedTuple):
    train: DataLoader
    test: DataLoader
    info: dict


def _synthetic_image(n, shape, num_classes, gen):
    # Each class is a fixed random pattern plus noise: learnable, but not in one step.
    numel = 1
    for d in shape:
        numel *= d
    prototypes = torch.randn(num_classes, *shape, generator=gen) * (8.0 / numel**0.5)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    x = prototypes[labels] + torch.randn(n, *shape, generator=gen)
    return x, labels


def _synthetic_text(n, seq_len, vocab_size, num_classes, gen):
    # Token 0 is padding. Each class over-uses its own band of the vocabulary.
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    tokens = torch.randint(1, vocab_size, (n, seq_len), generator=gen)
    band = max(1, (vocab_size - 1) // (4 * num_classes))
    marked = torch.rand(n, seq_len, generator=gen) < 0.3
    class_tokens = 1 + labels.unsqueeze(1) * band + torch.randint(0, band, (n, seq_len), generator=gen)
    tokens = torch.where(marked, class_tokens, tokens)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (n,), generator=gen)
    tokens[torch.arange(seq_len).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return tokens, labels


def _synthetic_sequence(n, seq_len, vocab_size, gen):
    # Next-token prediction over a sparse random Markov chain: low entropy, so loss can fall far.
    successors = torch.randint(0, vocab_size, (vocab_size, 3), generator=gen)
    seqs = torch.empty(n, seq_len + 1, dtype=torch.long)
    seqs[:, 0] = torch.randint(0, vocab_size, (n,), generator=gen)
    for t in range(seq_len):
        choice = torch.randint(0, 3, (n,), generator=gen)
        seqs[:, t + 1] = successors[seqs[:, t], choice]
    return seqs[:, :-1].contiguous(), seqs[:, 1:].contiguous()


def load_synthetic(kind="image", batch_size=64, n_train=2048, n_test=512, image_shape=(3, 32, 32),
                   num_classes=10, seq_len=64, vocab_size=1000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    if kind == "image":
        x, y = _synthetic_image(n, tuple(image_shape), num_classes, gen)
        info = {"kind": "image", "input_shape": list(image_shape), "num_classes": num_classes}
    elif kind == "text":
        x, y = _synthetic_text(n, seq_len, vocab_size, num_classes, gen)
        info = {"kind": "text", "seq_len": seq_len, "vocab_size": vocab_size, "num_classes": num_classes}
    elif kind == "sequence":
        x, y = _synthetic_sequence(n, seq_len, vocab_size, gen)
        info = {"kind": "sequence", "seq_len": seq_len, "vocab_size": vocab_size}
    else:
        raise ValueError(f"synthetic kind must be image, text or sequence, not {kind!r}")
    info.update(name="synthetic", n_train=n_train, n_test=n_test)
    train = TensorDataset(x[:n_train], y[:n_train])
    test = TensorDataset(x[n_train:], y[n_train:])
    return Loaders(
        DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen),
        DataLoader(test, batch_size=batch_size, shuffle=False, drop_last=True),
        info,
    )


def cache_dir():
    return os.environ.get("DATASET_CACHE_DIR", os.path.expanduser("~/.cache/annapurna/datasets"))


# ------------------------------------------------------------------------------------ the dataset store

def _safe_members(archive):
    """Regular files and folders with relative paths only: an archive must not write outside its
    folder or plant links."""
    for member in archive.getmembers():
        name = member.name
        if name.startswith("/") or ".." in Path(name).parts:
            raise DatasetUnavailable(f"archive member {name!r} points outside its folder")
        if member.isfile() or member.isdir():
            yield member


def _read_store_object(store_uri, key):
    if store_uri.startswith("file://") or store_uri.startswith("/"):
        path = Path(store_uri[len("file://"):] if store_uri.startswith("file://") else store_uri) / key
        if not path.is_file():
            raise DatasetUnavailable(f"{key} is not in the dataset store {store_uri}")
        return path.read_bytes()
    if store_uri.startswith("s3://"):
        bucket = store_uri[len("s3://"):].strip("/")
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise DatasetUnavailable("boto3 is not installed here, so the S3 dataset store is out of reach") from None
        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                              config=Config(retries={"max_attempts": 2}, connect_timeout=5))
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise DatasetUnavailable(f"s3://{bucket}/{key}: {exc}") from exc
    raise ValueError(f"dataset store must be s3://bucket or file:///path, not {store_uri!r}")


def store_key(name):
    return f"{name}/{name}.tar.gz"


def ensure_cached(name, cache_root, store_uri=None):
    """`cache_root/<name>` holding the dataset, fetched from the store when not there yet. The
    folder appears complete or not at all (unpacked beside it, then renamed); a folder a person put
    there by hand is used as it is."""
    target = Path(cache_root) / name
    if target.is_dir():
        return target
    store_uri = store_uri or os.environ.get("DATASET_STORE_URI") or DEFAULT_STORE_URI
    raw = _read_store_object(store_uri, store_key(name))
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_root))
    try:
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as archive:
                archive.extractall(staging, members=list(_safe_members(archive)))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetUnavailable(f"{name}: the store's archive is unreadable ({exc})") from exc
        (staging / COMPLETE_MARKER).write_text("ok\n")
        # Readable by the sandbox's own user: datasets are data, never secrets.
        for folder, _dirs, files in os.walk(staging):
            os.chmod(folder, 0o755)
            for file_name in files:
                os.chmod(os.path.join(folder, file_name), 0o644)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # not another slot staging the same dataset at the same time
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _dataset_root(name, root):
    if root is not None:
        return Path(root)
    local = Path(cache_dir()) / name
    if local.is_dir():
        return local
    if os.environ.get("DATASET_STORE_URI"):
        try:
            return ensure_cached(name, cache_dir())
        except OSError as exc:  # a read-only cache inside the sandbox, say
            raise DatasetUnavailable(f"{name}: cannot stage into {cache_dir()}: {exc}") from exc
    raise DatasetUnavailable(f"{name} is not in the local cache {local} and no DATASET_STORE_URI is set")


# ------------------------------------------------------------------------------------ the loaders

def _subset(x, y, limit):
    return (x[:limit], y[:limit]) if limit else (x, y)


def _images(name, root, max_train, max_test):
    read = formats.read_cifar if name.startswith("cifar") else formats.read_mnist_like
    x_train, y_train = _subset(*read(root, name, True), max_train)
    x_test, y_test = _subset(*read(root, name, False), max_test)
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in _NORMALIZE[name])

    def to_tensor(images):
        return (torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0 - mean) / std

    info = {"kind": "image", "input_shape": list(x_train.shape[1:]), "num_classes": 10 if name != "cifar100" else 100}
    return (to_tensor(x_train), torch.from_numpy(y_train)), (to_tensor(x_test), torch.from_numpy(y_test)), info


def _imdb(root, max_train, max_test, seq_len, vocab_size):
    data = formats.load_imdb(root, max_len=seq_len, max_vocab=vocab_size)
    x_train, y_train = _subset(*data["train"], max_train)
    x_test, y_test = _subset(*data["test"], max_test)
    info = {"kind": "text", "seq_len": seq_len, "vocab_size": len(data["vocab"]), "num_classes": 2,
            "vocab": data["vocab"].itos}
    return ((torch.from_numpy(x_train), torch.from_numpy(y_train)),
            (torch.from_numpy(x_test), torch.from_numpy(y_test)), info)


def _wikitext2(root, max_train, max_test, seq_len, vocab_size):
    data = formats.load_wikitext2(root, max_vocab=vocab_size)
    x_train, y_train = _subset(*formats.lm_windows(data["train"], seq_len), max_train)
    x_test, y_test = _subset(*formats.lm_windows(data["test"], seq_len), max_test)
    info = {"kind": "sequence", "seq_len": seq_len, "vocab_size": len(data["vocab"]), "vocab": data["vocab"].itos}
    return ((torch.from_numpy(x_train), torch.from_numpy(y_train)),
            (torch.from_numpy(x_test), torch.from_numpy(y_test)), info)


def load_dataset(name, batch_size=64, root=None, max_train=None, max_test=None, seq_len=None, vocab_size=None,
                 seed=0, **kwargs):
    """(train, test, info) DataLoaders for a named dataset. `max_train`/`max_test` cut the splits
    (a short time budget), `seq_len`/`vocab_size` shape the text datasets; the rest goes to
    `synthetic`."""
    name = name.lower().replace("-", "_")
    if name == "synthetic":
        extra = {k: v for k, v in (("seq_len", seq_len), ("vocab_size", vocab_size)) if v is not None}
        return load_synthetic(batch_size=batch_size, seed=seed, **extra, **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if kwargs:
        raise TypeError(f"{name} takes no options {sorted(kwargs)}")
    data_root = _dataset_root(name, root)
    try:
        if name in ("cifar10", "cifar100", "mnist", "fashion_mnist"):
            train, test, info = _images(name, data_root, max_train, max_test)
        elif name == "imdb":
            train, test, info = _imdb(data_root, max_train, max_test, seq_len or 256, vocab_size or 20000)
        else:
            train, test, info = _wikitext2(data_root, max_train, max_test, seq_len or 64, vocab_size)
    except (OSError, formats.DatasetFormatError) as exc:
        raise DatasetUnavailable(f"{name}: {exc}") from exc
    info.update(name=name, n_train=len(train[0]), n_test=len(test[0]))
    gen = torch.Generator().manual_seed(seed)
    if len(train[0]) < batch_size or len(test[0]) < batch_size:
        raise DatasetUnavailable(f"{name}: fewer examples than one batch of {batch_size}")
    return Loaders(
        DataLoader(TensorDataset(*train), batch_size=batch_size, shuffle=True, drop_last=True, generator=gen),
        DataLoader(TensorDataset(*test), batch_size=batch_size, shuffle=False, drop_last=True),
        info,
    )
