"""The production object store: Amazon S3 (or any S3-compatible server) through boto3.

The client comes from `dagster_aws.s3.S3Resource`, so region, endpoint, profile and credentials are
configured the way every other Dagster AWS resource is. Buckets listed in `write_once_buckets` (by
default the raw-papers bucket) never have a key replaced: `put` there behaves like `put_once`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from annapurna_resources.object_store import ObjectExistsError, ObjectInfo, ObjectStore
from annapurna_resources.settings import RAW_PAPERS_BUCKET

# Error codes S3 (and S3-compatible servers) use when a conditional write finds the key present.
_CONDITION_FAILED = {"PreconditionFailed", "412"}
# A concurrent conditional write to the same key: retrying can only find the key present.
_CONDITION_CONFLICT = {"ConditionalRequestConflict", "409"}
# Servers that do not know `If-None-Match` on PUT answer one of these; we then fall back to head+compare.
_CONDITION_UNSUPPORTED = {"NotImplemented", "501", "InvalidArgument"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3ObjectStore(ObjectStore):
    s3: S3Resource = Field(default_factory=S3Resource, description="boto3 settings: region, endpoint, profile")
    bucket_map: dict[str, str] = Field(
        default_factory=dict,
        description="Logical bucket name -> real bucket name, for accounts where the design's names are taken",
    )
    write_once_buckets: list[str] = Field(default_factory=lambda: [RAW_PAPERS_BUCKET])
    create_buckets: bool = Field(default=False, description="Create missing buckets on first use (tests, MinIO)")

    _client: Any = PrivateAttr(default=None)
    _ready: set[str] = PrivateAttr(default_factory=set)
    # None until the first conditional put tells us whether the server honours If-None-Match.
    _conditional_puts: bool | None = PrivateAttr(default=None)

    def _bucket(self, bucket: str) -> str:
        return self.bucket_map.get(bucket, bucket)

    def _s3(self, bucket: str | None = None) -> Any:
        if self._client is None:
            self._client = self.s3.get_client()
        if bucket is not None and self.create_buckets and bucket not in self._ready:
            real = self._bucket(bucket)
            try:
                self._client.head_bucket(Bucket=real)
            except ClientError:
                region = self._client.meta.region_name
                kwargs: dict[str, Any] = {"Bucket": real}
                if region and region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
                self._client.create_bucket(**kwargs)
            self._ready.add(bucket)
        return self._client

    @staticmethod
    def _check_key(key: str) -> None:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid object key {key!r}")

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> str:
        if bucket in self.write_once_buckets:
            self.put_once(bucket, key, data, content_type)
            return self.uri(bucket, key)
        self._check_key(key)
        extra = {"ContentType": content_type} if content_type else {}
        self._s3(bucket).put_object(Bucket=self._bucket(bucket), Key=key, Body=data, **extra)
        return self.uri(bucket, key)

    def put_once(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> bool:
        self._check_key(key)
        client = self._s3(bucket)
        extra = {"ContentType": content_type} if content_type else {}
        if self._conditional_puts is not False:
            try:
                # If-None-Match: * makes S3 itself refuse the write when the key exists, so two
                # writers racing for one key can never both succeed.
                client.put_object(Bucket=self._bucket(bucket), Key=key, Body=data, IfNoneMatch="*", **extra)
                self._conditional_puts = True
                return True
            except ClientError as exc:
                code = _error_code(exc)
                if code in _CONDITION_FAILED or code in _CONDITION_CONFLICT or _http_status(exc) in (409, 412):
                    return self._same_or_raise(bucket, key, data)
                if code not in _CONDITION_UNSUPPORTED and _http_status(exc) != 501:
                    raise
                self._conditional_puts = False
        # Server without conditional writes: check first. Not atomic, but nothing is replaced by us
        # unless another writer slips in between the head and the put.
        if self.exists(bucket, key):
            return self._same_or_raise(bucket, key, data)
        client.put_object(Bucket=self._bucket(bucket), Key=key, Body=data, **extra)
        return True

    def _same_or_raise(self, bucket: str, key: str, data: bytes) -> bool:
        try:
            stored = self.get(bucket, key)
        except KeyError:
            # 409: the other writer's upload had not finished; whatever it writes, ours is not stored.
            raise ObjectExistsError(f"{bucket}/{key} is being written by another writer; not overwriting") from None
        if hashlib.sha256(stored).digest() != hashlib.sha256(data).digest():
            raise ObjectExistsError(f"{bucket}/{key} already holds other bytes; refusing to overwrite")
        return False

    def get(self, bucket: str, key: str) -> bytes:
        try:
            response = self._s3(bucket).get_object(Bucket=self._bucket(bucket), Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING or _http_status(exc) == 404:
                raise KeyError(f"{bucket}/{key}") from None
            raise
        return response["Body"].read()

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._s3(bucket).head_object(Bucket=self._bucket(bucket), Key=key)
            return True
        except ClientError as exc:
            if _error_code(exc) in _MISSING or _http_status(exc) == 404:
                return False
            raise

    def list_objects(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket(bucket), "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        # ListObjectsV2 returns keys in UTF-8 binary order, which is the order the interface promises;
        # the paginator follows ContinuationToken across the 1000-key pages.
        for page in self._s3(bucket).get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield ObjectInfo(key=obj["Key"], size=int(obj["Size"]), last_modified=obj["LastModified"])

    def uri(self, bucket: str, key: str) -> str:
        return f"s3://{self._bucket(bucket)}/{key}"


def s3_object_store_from_env() -> S3ObjectStore:
    """The store the `aws` profile uses. Region, endpoint and profile come from the usual AWS variables
    (AWS_REGION, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for MinIO/moto, AWS_PROFILE); credentials from
    boto3's own chain, never from our config. ANNAPURNA_S3_CREATE_BUCKETS=1 creates missing buckets."""
    return S3ObjectStore(
        s3=S3Resource(
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            profile_name=os.environ.get("AWS_PROFILE"),
        ),
        create_buckets=os.environ.get("ANNAPURNA_S3_CREATE_BUCKETS", "0") == "1",
    )
