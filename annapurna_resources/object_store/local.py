"""The embedded object store: bucket `B`, key `K` is the file `<root>/B/K`, so a person can look inside."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from annapurna_resources.object_store import ObjectExistsError, ObjectInfo, ObjectStore


class LocalObjectStore(ObjectStore):
    root: str

    def _path(self, bucket: str, key: str) -> Path:
        if not key or key.startswith("/") or ".." in Path(key).parts:
            raise ValueError(f"invalid object key {key!r}")
        return Path(self.root) / bucket / key

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> str:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader (or a crash) never sees half an object.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return str(path)

    def put_once(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> bool:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            # link() fails if the key exists, so two writers can never both "win".
            os.link(tmp, path)
            return True
        except FileExistsError:
            if path.read_bytes() != data:
                raise ObjectExistsError(f"{bucket}/{key} already holds other bytes; refusing to overwrite") from None
            return False
        finally:
            os.unlink(tmp)

    def get(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"{bucket}/{key}") from None

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def list_objects(self, bucket: str, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        base = Path(self.root) / bucket
        # Walk only the folder the prefix names, never the whole bucket.
        folder = base / prefix.rsplit("/", 1)[0] if "/" in prefix else base
        if not folder.is_dir():
            return
        keys = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = str((Path(dirpath) / name).relative_to(base))
                if key.startswith(prefix) and (start_after is None or key > start_after):
                    keys.append(key)
        for key in sorted(keys):
            st = (base / key).stat()
            yield ObjectInfo(key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def uri(self, bucket: str, key: str) -> str:
        return str(self._path(bucket, key))
