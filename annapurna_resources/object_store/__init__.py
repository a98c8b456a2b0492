"""The object store: buckets of immutable-by-convention blobs (S3 in production, a folder locally)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import dagster as dg


class ObjectExistsError(Exception):
    """Raised by `put_once` when the key already holds different bytes: stored data is never replaced."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime


class ObjectStore(dg.ConfigurableResource, ABC):
    """One interface for every backend; assets only ever see this type."""

    @abstractmethod
    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> str:
        """Write (or replace) `key`; returns its URI. Use only for derived data that may be rewritten."""

    @abstractmethod
    def get(self, bucket: str, key: str) -> bytes:
        """Raise KeyError when the key does not exist."""

    @abstractmethod
    def exists(self, bucket: str, key: str) -> bool: ...

    @abstractmethod
    def list_objects(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects under `prefix` in key order, only those sorting after `start_after` when given."""

    @abstractmethod
    def uri(self, bucket: str, key: str) -> str:
        """Where a person can find the object (a file path locally, s3:// in production)."""

    def put_once(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> bool:
        """Write `key` only if it is new. Returns True when written, False when the same bytes were
        already there; raises ObjectExistsError when other bytes are there."""
        if self.exists(bucket, key):
            if hashlib.sha256(self.get(bucket, key)).digest() != hashlib.sha256(data).digest():
                raise ObjectExistsError(f"{bucket}/{key} already holds other bytes; refusing to overwrite")
            return False
        self.put(bucket, key, data, content_type)
        return True

    def get_text(self, bucket: str, key: str) -> str:
        return self.get(bucket, key).decode("utf-8")

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return [o.key for o in self.list_objects(bucket, prefix)]
