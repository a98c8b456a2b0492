"""The `datasets` asset: the standard datasets staged in the dataset store (`datasets-for-all-papers`),
one archive per dataset at `<name>/<name>.tar.gz` in its published layout, which is what
`dataset_loader` fetches into a host's cache.

For each dataset, in order: already in the store (nothing to do); in the local cache
(`DATASET_CACHE_DIR/<name>`, packed and uploaded); downloaded from its publisher (or a mirror),
checked with its reader, then uploaded. Offline, a dataset that is nowhere gets a clear error row;
the others still stage.
"""


import gzip
import io
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from annapurna_assets.reporting import markdown_table
from annapurna_resources.object_store import ObjectStore
from annapurna_resources.settings import DATASETS_BUCKET, annapurna_home
from neuron_step.runtime import dataset_formats as formats
from neuron_step.runtime.dataset_loader import STANDARD, store_key

DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Download:
    url: str
    kind: str  # "tar" (unpacked as published), "zip", or "gz-files" (the IDX files, kept gzipped)


_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz")
# Where each publisher puts them.
SOURCES: dict[str, list[Download]] = {
    "cifar10": [Download("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "tar")],
    "cifar100": [Download("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "tar")],
    "mnist": [Download(f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}", "gz-files") for f in _IDX],
    "fashion_mnist": [Download(f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}", "gz-files")
                      for f in _IDX],
    "imdb": [Download("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz", "tar")],
    "wikitext2": [Download("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip", "zip")],
}


class DatasetsConfig(dg.Config):
    names: list[str] = list(STANDARD)
    download: bool = True
    # A base URL serving `<name>/<file name>` in place of the publishers (a mirror inside a VPC, say).
    mirror: str | None = None


def validate(name: str, folder: Path) -> int:
    """Read the dataset with its own reader (the one programs use); returns the train examples."""
    if name in ("cifar10", "cifar100"):
        return len(formats.read_cifar(folder, name, True)[1])
    if name in ("mnist", "fashion_mnist"):
        return len(formats.read_mnist_like(folder, name, True)[1])
    if name == "imdb":
        return len(formats.read_imdb(folder, True)[1])
    if name == "wikitext2":
        return len(formats.load_wikitext2(folder)["train"])
    raise ValueError(f"unknown dataset {name!r}")


def pack(folder: Path) -> bytes:
    """A gzipped tar of the folder's contents, in sorted order with fixed metadata, so packing the
    same files twice gives the same bytes (put_once then sees no change)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or path.name == ".complete":
                continue
            info = archive.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as f:
                    archive.addfile(info, f)
            else:
                archive.addfile(info)
    return buf.getvalue()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - fixed URLs
        return response.read()


def download(name: str, into: Path, mirror: str | None = None) -> None:
    """Fetch the publisher's files and unpack them into `into` in the published layout."""
    for item in SOURCES[name]:
        file_name = item.url.rsplit("/", 1)[1]
        url = f"{mirror.rstrip('/')}/{name}/{file_name}" if mirror else item.url
        data = _fetch(url)
        if item.kind == "gz-files":
            (into / file_name).write_bytes(data)
        elif item.kind == "tar":
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                archive.extractall(into, filter="data")  # refuses absolute paths, `..` and device files
        else:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise ValueError(f"zip member {member!r} points outside its folder")
                archive.extractall(into)


def stage(name: str, store: ObjectStore, cache_root: Path, allow_download: bool, mirror: str | None) -> dict:
    key = store_key(name)
    row = {"name": name, "key": key, "status": "", "source": "", "bytes": 0, "train_examples": None, "error": None}
    if store.exists(DATASETS_BUCKET, key):
        return {**row, "status": "present", "source": "store"}
    cached = cache_root / name
    errors: list[str] = []
    if cached.is_dir():
        try:
            row["train_examples"] = validate(name, cached)
            data = pack(cached)
            store.put_once(DATASETS_BUCKET, key, data, "application/gzip")
            return {**row, "status": "staged", "source": f"cache {cached}", "bytes": len(data)}
        except (OSError, formats.DatasetFormatError) as exc:
            errors.append(f"cache {cached}: {exc}")
    if allow_download:
        with tempfile.TemporaryDirectory(prefix=f"annapurna-{name}-") as tmp:
            folder = Path(tmp)
            try:
                download(name, folder, mirror)
                row["train_examples"] = validate(name, folder)
                data = pack(folder)
                store.put_once(DATASETS_BUCKET, key, data, "application/gzip")
                return {**row, "status": "staged", "source": "download", "bytes": len(data)}
            except (OSError, urllib.error.URLError, ValueError, tarfile.TarError, zipfile.BadZipFile,
                    formats.DatasetFormatError) as exc:
                errors.append(f"download failed ({type(exc).__name__}: {exc}); put the published files under "
                              f"{cached} and materialize again")
    else:
        errors.append(f"not in the store or the cache {cached}, and downloading is off")
    return {**row, "status": "error", "error": "; ".join(errors)}


@dg.asset(group_name="datasets", kinds={"s3"},
          description="The standard datasets staged in the dataset store for the programs' hosts.")
def datasets(context: dg.AssetExecutionContext, config: DatasetsConfig, store: ObjectStore) -> dg.MaterializeResult:
    cache_root = Path(os.environ.get("DATASET_CACHE_DIR") or annapurna_home() / "datasets")
    rows = []
    for name in config.names:
        if name not in STANDARD:
            rows.append({"name": name, "key": None, "status": "error", "source": "", "bytes": 0,
                         "train_examples": None, "error": f"unknown dataset; known: {', '.join(STANDARD)}"})
            continue
        row = stage(name, store, cache_root, config.download, config.mirror)
        if row["status"] == "error":
            context.log.warning(f"{name}: {row['error']}")
        else:
            context.log.info(f"{name}: {row['status']} ({row['source']})")
        rows.append(row)
    df = pd.DataFrame(rows)
    return dg.MaterializeResult(metadata={
        "staged": int((df["status"] == "staged").sum()), "present": int((df["status"] == "present").sum()),
        "errors": int((df["status"] == "error").sum()),
        "datasets": dg.MetadataValue.md(markdown_table(df, ["name", "status", "source", "bytes", "error"], max_width=160)),
    })
