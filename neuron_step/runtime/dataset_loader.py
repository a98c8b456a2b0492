"""`load_dataset(name, batch_size=...)` for generated programs: returns (train, test, info) where
train and test are PyTorch DataLoaders with fixed batch shapes (drop_last) and info describes them.

`synthetic` is generated here (image-, text- and sequence-shaped variants, learnable, seeded); the
standard datasets are read from the local cache (`DATASET_CACHE_DIR`) in their on-disk formats.
"""

import os
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, TensorDataset

DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "imdb", "wikitext2", "synthetic")


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


def load_dataset(name, batch_size=64, **kwargs):
    name = name.lower().replace("-", "_")
    if name == "synthetic":
        return load_synthetic(batch_size=batch_size, **kwargs)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    try:
        import dataset_formats  # shipped beside this module where the standard formats are supported
    except ImportError:
        raise DatasetUnavailable(f"{name}: no reader for standard formats on this host") from None
    load = getattr(dataset_formats, "load", None)
    if load is None:
        raise DatasetUnavailable(f"{name}: no reader for standard formats on this host")
    format_error = getattr(dataset_formats, "DatasetFormatError", OSError)
    try:
        return load(name, batch_size=batch_size, root=cache_dir(), loaders=Loaders, **kwargs)
    except (OSError, format_error) as exc:
        raise DatasetUnavailable(f"{name}: {exc}") from exc
