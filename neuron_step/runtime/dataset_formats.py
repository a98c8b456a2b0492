"""Readers for the standard on-disk formats of the datasets generated programs use.

Shipped to the executor host beside `dataset_loader.py`, so it may import only the standard library,
numpy and torch. Every reader takes the folder a dataset was unpacked into (the layout its publisher
ships, or torchvision's) and returns plain arrays; the loader turns them into DataLoaders.

Formats:
- CIFAR-10 / CIFAR-100: python pickles (`cifar-10-batches-py/data_batch_1..5`, `test_batch`;
  `cifar-100-python/train`, `test` with `fine_labels`). Read with an unpickler that admits only
  numpy arrays, since a pickle can otherwise run any code.
- MNIST / Fashion-MNIST: IDX files (`train-images-idx3-ubyte`, ...), optionally gzipped.
- IMDB: the `aclImdb/{train,test}/{pos,neg}/*.txt` folders, tokenized, with a vocabulary built on train.
- WikiText-2: raw text (`wiki.train.raw`, `wiki.valid.raw`, `wiki.test.raw`) as one token-id stream
  per split, `<eos>` at each line end, vocabulary from train.
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetFormatError(Exception):
    """A dataset's files are missing or do not hold what their format promises."""


# ---------------------------------------------------------------------------------------------- CIFAR

# What a CIFAR pickle legitimately references: numpy's array reconstruction (under its numpy 1 and
# numpy 2 module names) and the codec protocol-2 pickles use for bytes. Anything else is refused.
_PICKLE_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_ALLOWED_GLOBALS:
            raise DatasetFormatError(f"pickle references {module}.{name}; only numpy arrays are allowed")
        if module == "numpy.core.multiarray":
            # numpy 2 moved it to numpy._core and warns on the old name; numpy 1 has only the old one.
            try:
                return super().find_class("numpy._core.multiarray", name)
            except (ModuleNotFoundError, AttributeError):
                pass
        return super().find_class(module, name)


def load_array_pickle(path: Path) -> dict[str, object]:
    """A CIFAR batch file as a dict with str keys (the files were written by Python 2: bytes keys)."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except DatasetFormatError:
        raise
    except Exception as exc:  # a truncated or foreign file raises anything from EOFError to ValueError
        raise DatasetFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _cifar_images(batch: dict[str, object], path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(f"{path}: 'data' must be uint8 of shape (N, 3072), found {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32)


def read_cifar(root: Path, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of CIFAR-10 or CIFAR-100 (fine labels)."""
    if name not in CIFAR_FOLDERS:
        raise ValueError(f"not a CIFAR dataset: {name!r}")
    folder = _find_folder(Path(root), CIFAR_FOLDERS[name])
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        label_key = "labels"
    else:
        files = ["train" if train else "test"]
        label_key = "fine_labels"
    images, labels = [], []
    for file_name in files:
        path = folder / file_name
        if not path.is_file():
            raise DatasetFormatError(f"{name}: missing {path}")
        batch = load_array_pickle(path)
        batch_images = _cifar_images(batch, path)
        batch_labels = np.asarray(batch.get(label_key, []), dtype=np.int64)
        if batch_labels.shape != (batch_images.shape[0],):
            raise DatasetFormatError(f"{path}: {batch_images.shape[0]} images but {batch_labels.size} '{label_key}'")
        images.append(batch_images)
        labels.append(batch_labels)
    labels_all = np.concatenate(labels)
    n_classes = 10 if name == "cifar10" else 100
    if labels_all.size and (labels_all.min() < 0 or labels_all.max() >= n_classes):
        raise DatasetFormatError(f"{name}: labels outside 0..{n_classes - 1}")
    return np.concatenate(images), labels_all


# ---------------------------------------------------------------------------------------------- IDX

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """An IDX file (the MNIST format): 2 zero bytes, a dtype code, the number of dimensions, each
    dimension as big-endian uint32, then the data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetFormatError(f"{source}: not an IDX file (bad magic)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code not in _IDX_DTYPES:
        raise DatasetFormatError(f"{source}: unknown IDX dtype code {dtype_code:#x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{source}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetFormatError(f"{source}: IDX dims {dims} need {expected} data bytes, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: the files are published gzipped
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetFormatError(f"{path}: corrupt gzip ({exc})") from exc
    return parse_idx(raw, str(path))


# Publishers name them `train-images-idx3-ubyte`; some mirrors `train-images.idx3-ubyte`.
_IDX_STEMS = {
    (True, "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    (True, "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    (False, "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    (False, "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
# Folders the files are found in: the root itself, or torchvision's `<Name>/raw`.
IDX_FOLDERS = {"mnist": ("mnist", "MNIST/raw", "MNIST", "raw"),
               "fashion_mnist": ("fashion_mnist", "FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "raw")}


def _find_idx_file(root: Path, name: str, train: bool, kind: str) -> Path:
    candidates = [Path(root)] + [Path(root) / sub for sub in IDX_FOLDERS[name]]
    for folder in candidates:
        for stem in _IDX_STEMS[(train, kind)]:
            for suffix in ("", ".gz"):
                path = folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
    raise DatasetFormatError(f"{name}: no {_IDX_STEMS[(train, kind)][0]}[.gz] under {root}")


def read_mnist_like(root: Path, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 1, 28, 28) and labels int64 (N,) of MNIST or Fashion-MNIST."""
    if name not in IDX_FOLDERS:
        raise ValueError(f"not an IDX dataset: {name!r}")
    images = read_idx(_find_idx_file(root, name, train, "images"))
    labels = read_idx(_find_idx_file(root, name, train, "labels"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetFormatError(f"{name}: images {images.shape} do not match labels {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetFormatError(f"{name}: labels outside 0..9")
    return images.astype(np.uint8)[:, None, :, :], labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------- text

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?.,;:]")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def tokenize(text: str) -> list[str]:
    """Lower-case words and the punctuation that carries sentiment; IMDB reviews hold `<br />` tags."""
    return _TOKEN.findall(_HTML_BREAK.sub(" ", text).lower())


@dataclass
class Vocab:
    itos: list[str]

    def __post_init__(self) -> None:
        self.stoi = {token: i for i, token in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        unk = self.stoi.get(UNK, 0)
        return [self.stoi.get(t, unk) for t in tokens]

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], specials: Sequence[str] = (PAD, UNK),
              max_size: int | None = None, min_freq: int = 1) -> Vocab:
        """Specials first, then tokens by falling frequency (ties alphabetical, so it is deterministic)."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(specials))]
        return cls(list(specials) + ranked)


def read_imdb(root: Path, train: bool) -> tuple[list[str], np.ndarray]:
    """Review texts and labels (1 = pos, 0 = neg) from the aclImdb folders."""
    folder = _find_folder(Path(root), "aclImdb") / ("train" if train else "test")
    texts: list[str] = []
    labels: list[int] = []
    for label_name, label in (("neg", 0), ("pos", 1)):
        label_dir = folder / label_name
        if not label_dir.is_dir():
            raise DatasetFormatError(f"imdb: missing folder {label_dir}")
        # Files are named <id>_<rating>.txt; sorting makes the order the same on every host.
        for path in sorted(label_dir.glob("*.txt")):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    if not texts:
        raise DatasetFormatError(f"imdb: no reviews under {folder}")
    return texts, np.asarray(labels, dtype=np.int64)


def encode_padded(token_lists: Sequence[Sequence[str]], vocab: Vocab, max_len: int) -> np.ndarray:
    """(N, max_len) int64 token ids, truncated or right-padded with `<pad>`."""
    pad = vocab.stoi.get(PAD, 0)
    out = np.full((len(token_lists), max_len), pad, dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        ids = vocab.encode(tokens[:max_len])
        out[row, : len(ids)] = ids
    return out


def load_imdb(root: Path, max_len: int = 256, max_vocab: int = 20000) -> dict[str, object]:
    """Both splits encoded with one vocabulary built on train (test words never leak into it)."""
    train_texts, train_labels = read_imdb(root, train=True)
    test_texts, test_labels = read_imdb(root, train=False)
    train_tokens = [tokenize(t) for t in train_texts]
    test_tokens = [tokenize(t) for t in test_texts]
    vocab = Vocab.build(train_tokens, max_size=max_vocab)
    return {"vocab": vocab,
            "train": (encode_padded(train_tokens, vocab, max_len), train_labels),
            "test": (encode_padded(test_tokens, vocab, max_len), test_labels)}


WIKITEXT_FOLDERS = ("wikitext-2-raw", "wikitext-2", "wikitext2")
WIKITEXT_FILES = {"train": ("wiki.train.raw", "wiki.train.tokens"),
                  "valid": ("wiki.valid.raw", "wiki.valid.tokens"),
                  "test": ("wiki.test.raw", "wiki.test.tokens")}


def wikitext_tokens(text: str) -> list[str]:
    """Whitespace-separated tokens, `<eos>` after each non-empty line (the usual word-level LM setup)."""
    tokens: list[str] = []
    for line in io.StringIO(text):
        words = line.split()
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


def _wikitext_file(root: Path, split: str) -> Path:
    for folder in [Path(root)] + [Path(root) / f for f in WIKITEXT_FOLDERS]:
        for file_name in WIKITEXT_FILES[split]:
            if (folder / file_name).is_file():
                return folder / file_name
    raise DatasetFormatError(f"wikitext2: no {WIKITEXT_FILES[split][0]} under {root}")


def load_wikitext2(root: Path, max_vocab: int | None = None) -> dict[str, object]:
    """Token-id streams (int64) for train/valid/test over one vocabulary built on train."""
    splits = {s: wikitext_tokens(_wikitext_file(root, s).read_text(encoding="utf-8")) for s in WIKITEXT_FILES}
    if not splits["train"]:
        raise DatasetFormatError("wikitext2: the train split is empty")
    vocab = Vocab.build([splits["train"]], specials=(UNK, EOS), max_size=max_vocab)
    return {"vocab": vocab, **{s: np.asarray(vocab.encode(t), dtype=np.int64) for s, t in splits.items()}}


def lm_windows(ids: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, target) windows of `seq_len` tokens, target shifted by one."""
    if seq_len < 1:
        raise ValueError("seq_len must be >= 1")
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise DatasetFormatError(f"{len(ids)} tokens are too few for windows of {seq_len}")
    inputs = ids[: n * seq_len].reshape(n, seq_len)
    targets = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return inputs, targets


# ---------------------------------------------------------------------------------------------- common

def _find_folder(root: Path, name: str) -> Path:
    """`root/name` when the archive was unpacked into root, or root itself when root is that folder."""
    if (root / name).is_dir():
        return root / name
    if root.name == name or root.is_dir():
        return root
    raise DatasetFormatError(f"no folder {name} under {root}")
