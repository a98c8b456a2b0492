"""The Neuron compile cache: compiled graphs kept on S3 so a stopped-and-started host (or a new one)
does not compile every program again (first compiles take minutes).

Programs run without network, so they cannot reach `s3://` themselves. The host gives them a local
folder as `NEURON_COMPILE_CACHE_URL` (bound writable into the sandbox) and the executor syncs that
folder with S3 (`ANNAPURNA_COMPILE_CACHE_S3=s3://bucket/prefix`): pulled when the service starts,
pushed after each run. Only files missing on the other side move; graphs never change once written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("annapurna.compile_cache")

LOCAL_ENV = "NEURON_COMPILE_CACHE_URL"
S3_ENV = "ANNAPURNA_COMPILE_CACHE_S3"


def local_cache_dir() -> Path | None:
    """The local folder programs compile into, when NEURON_COMPILE_CACHE_URL names one."""
    value = os.environ.get(LOCAL_ENV, "").strip()
    if not value or "://" in value:
        return None
    return Path(value)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def _remote_keys(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for obj in page.get("Contents", []):
            keys[obj["Key"]] = obj["Size"]
    return keys


def push(s3: Any, uri: str, local: Path) -> int:
    """Upload local files S3 does not have yet; returns how many went up."""
    bucket, prefix = split_s3_uri(uri)
    remote = _remote_keys(s3, bucket, prefix)
    sent = 0
    for path in sorted(local.rglob("*")):
        if not path.is_file() or path.is_symlink() or path.name.endswith(".lock"):
            continue
        key = "/".join(p for p in (prefix, path.relative_to(local).as_posix()) if p)
        if key in remote:
            continue
        s3.upload_file(str(path), bucket, key)
        sent += 1
    return sent


def pull(s3: Any, uri: str, local: Path) -> int:
    """Download what S3 has and the local folder lacks; returns how many came down."""
    bucket, prefix = split_s3_uri(uri)
    got = 0
    for key in _remote_keys(s3, bucket, prefix):
        rel = key[len(prefix) + 1:] if prefix else key
        target = (local / rel).resolve()
        if local.resolve() not in target.parents or target.exists():  # a hostile key stays outside
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        got += 1
    return got


def sync_after_run(s3_factory: Any = None) -> int:
    """Push new graphs if the host keeps its cache on S3; never fails a run over it."""
    uri = os.environ.get(S3_ENV, "").strip()
    local = local_cache_dir()
    if not uri or local is None or not local.is_dir():
        return 0
    try:
        import boto3

        return push((s3_factory or boto3.client)("s3"), uri, local)
    except Exception as exc:  # a cache that does not sync costs time, not results
        log.warning("compile cache push to %s failed: %s", uri, exc)
        return 0
