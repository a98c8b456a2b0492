"""The embedded request queue: a spool folder, one JSON file per message.

Layout under `root` (by default `$ANNAPURNA_HOME/queue/code-evaluation.fifo/`):

    messages/<sent_ns>-<message_id>.json     waiting, in FIFO order by name
    dead-letter/<same name>                  moved aside, with the reason added
    dedup/<sha256 of dedup id>               which message a deduplication id produced, and when

Every file is written to a temporary name and renamed into place, so a reader (or a crash) never
sees half a message. A person may also drop a bare request (`{"action": ...}`) into `messages/`:
it is read as the body of a message whose id is the file name.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from annapurna_resources.queue import (
    DEFAULT_MESSAGE_GROUP,
    MAX_BODY_BYTES,
    QueueMessage,
    RequestQueue,
    deduplication_id,
)
from annapurna_resources.settings import REQUEST_QUEUE, annapurna_home

# SQS FIFO queues deduplicate within five minutes; the spool keeps the same promise.
DEDUP_WINDOW_S = 300
# A file bigger than any valid message is not read whole: it goes straight to the dead-letter folder.
_MAX_FILE_BYTES = 2 * MAX_BODY_BYTES


def default_spool_root() -> Path:
    return annapurna_home() / "queue" / REQUEST_QUEUE


def _write_atomically(path: Path, data: bytes, replace: bool) -> bool:
    """Write `path` through a temporary file. With replace=False an existing file is kept (returns False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if the name exists: two writers never both win
            return True
        except FileExistsError:
            return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class SpoolRequestQueue(RequestQueue):
    """Requests as files in a folder; for one machine, where the sensor is the only consumer."""

    root: str = ""

    def _root(self) -> Path:
        return Path(self.root) if self.root else default_spool_root()

    @property
    def messages_dir(self) -> Path:
        return self._root() / "messages"

    @property
    def dead_letter_dir(self) -> Path:
        return self._root() / "dead-letter"

    def send(self, body: str, group_id: str = DEFAULT_MESSAGE_GROUP, dedup_id: str | None = None) -> str:
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:
            raise ValueError(f"message body is over the {MAX_BODY_BYTES}-byte limit")
        dedup_id = dedup_id or deduplication_id(body)
        marker = self._root() / "dedup" / hashlib.sha256(dedup_id.encode("utf-8")).hexdigest()
        previous = self._recent_duplicate(marker)
        if previous is not None:
            return previous
        message_id = str(uuid.uuid4())
        envelope = {
            "message_id": message_id,
            "group_id": group_id,
            "deduplication_id": dedup_id,
            "sent_at": datetime.now(UTC).isoformat(),
            "body": body,
        }
        # Nanoseconds first in the name so that sorting names is sending order.
        name = f"{time.time_ns():020d}-{message_id}.json"
        _write_atomically(self.messages_dir / name, json.dumps(envelope).encode("utf-8"), replace=False)
        _write_atomically(marker, message_id.encode("utf-8"), replace=True)
        return message_id

    def _recent_duplicate(self, marker: Path) -> str | None:
        try:
            age = time.time() - marker.stat().st_mtime
            if age < DEDUP_WINDOW_S:
                return marker.read_text("utf-8").strip() or None
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        return None

    def receive(self, max_messages: int = 10) -> list[QueueMessage]:
        folder = self.messages_dir
        if not folder.is_dir():
            return []
        names = sorted(n for n in os.listdir(folder) if not n.startswith(".") and (folder / n).is_file())
        return [self._read(folder / name) for name in names[:max_messages]]

    def _read(self, path: Path) -> QueueMessage:
        """Whatever the file holds becomes a message; judging the body is the consumer's job."""
        stem = path.name.removesuffix(".json")
        fallback_id = stem.split("-", 1)[1] if "-" in stem and stem.split("-", 1)[0].isdigit() else stem
        try:
            if path.stat().st_size > _MAX_FILE_BYTES:
                return QueueMessage(fallback_id, f"<file of {path.stat().st_size} bytes, too large>", path.name)
            raw = path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            # Deleted between listing and reading: hand back an empty body; deleting it is a no-op.
            return QueueMessage(fallback_id, "", path.name)
        envelope: Any
        try:
            envelope = json.loads(raw)
        except json.JSONDecodeError:
            envelope = None
        if isinstance(envelope, dict) and isinstance(envelope.get("body"), str) and "message_id" in envelope:
            return QueueMessage(
                message_id=str(envelope["message_id"]),
                body=envelope["body"],
                receipt_handle=path.name,
                attributes={k: str(v) for k, v in envelope.items() if k not in ("body", "message_id")},
            )
        # A file dropped by hand: the file itself is the body.
        return QueueMessage(fallback_id, raw, path.name, attributes={"dropped_file": path.name})

    def _message_path(self, message: QueueMessage) -> Path:
        name = Path(message.receipt_handle).name  # never a path outside the spool
        return self.messages_dir / name

    def delete(self, message: QueueMessage) -> None:
        self._message_path(message).unlink(missing_ok=True)

    def dead_letter(self, message: QueueMessage, reason: str) -> None:
        source = self._message_path(message)
        record = {
            "message_id": message.message_id,
            "body": message.body,
            "attributes": message.attributes,
            "reason": reason,
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        target = self.dead_letter_dir / source.name
        if not _write_atomically(target, json.dumps(record, indent=2).encode("utf-8"), replace=False):
            # Never overwrite what is already there: a second failure of the same name gets its own file.
            target = self.dead_letter_dir / f"{source.stem}-{uuid.uuid4().hex[:8]}.json"
            _write_atomically(target, json.dumps(record, indent=2).encode("utf-8"), replace=False)
        source.unlink(missing_ok=True)

    def dead_letters(self) -> list[dict[str, Any]]:
        """What was moved aside, oldest first (for `annapurna status` and for tests)."""
        folder = self.dead_letter_dir
        if not folder.is_dir():
            return []
        out = []
        for name in sorted(os.listdir(folder)):
            if name.startswith("."):
                continue
            try:
                out.append(json.loads((folder / name).read_text("utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError):
                out.append({"file": name, "reason": "unreadable dead-letter record"})
        return sorted(out, key=lambda r: str(r.get("dead_lettered_at", "")))
