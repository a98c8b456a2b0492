"""The request payload parser and the spool-folder queue (the embedded default)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from annapurna_resources.queue import (
    GENERATE_ACTIONS,
    GenerateRequest,
    InvalidRequest,
    QueueMessage,
    parse_request,
)
from annapurna_resources.queue.spool import SpoolRequestQueue, default_spool_root

# ---------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    ("payload", "check"),
    [
        ({"action": "generate_by_title", "title": " Attention Is All You Need ", "max_papers": 1},
         lambda r: r.title == "Attention Is All You Need" and r.max_papers == 1),
        ({"action": "generate_by_id", "paper_id": "2401.01234v2"}, lambda r: r.paper_id == "2401.01234v2"),
        ({"action": "generate_by_ids", "paper_ids": ["a1", "b-2"]}, lambda r: r.paper_ids == ["a1", "b-2"]),
        ({"action": "generate_by_author", "author": "Yoshua Bengio", "max_papers": 5},
         lambda r: r.author == "Yoshua Bengio" and r.max_papers == 5),
        ({"action": "generate_by_keywords", "keywords": "diffusion, image editing"},
         lambda r: r.keywords == ["diffusion", "image editing"]),
        ({"action": "generate_by_keywords", "keywords": "sparse attention"},
         lambda r: r.keywords == ["sparse", "attention"]),
        ({"action": "generate_by_keywords", "keywords": ["moe"]}, lambda r: r.keywords == ["moe"]),
        ({"action": "generate_recent", "max_papers": 3}, lambda r: r.max_papers == 3),
        ({"action": "get_paper_info", "title": "Some paper"}, lambda r: r.title == "Some paper"),
    ],
)
def test_valid_payloads_parse(payload: dict, check) -> None:
    request = parse_request(json.dumps(payload))
    assert request.action == payload["action"]
    assert check(request)
    # The body round-trips: what the CLI sends is what the sensor reads.
    assert parse_request(request.to_body()) == request


def test_every_design_action_is_known() -> None:
    assert set(GENERATE_ACTIONS) == {
        "generate_by_id", "generate_by_ids", "generate_by_title", "generate_by_author",
        "generate_by_keywords", "generate_recent", "get_paper_info",
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "not JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("[1, 2]", "JSON object"),
        ('{"action": "delete_everything"}', "action"),
        ('{"action": "generate_by_title"}', "needs a non-empty title"),
        ('{"action": "generate_by_title", "title": "   "}', "needs a non-empty title"),
        ('{"action": "generate_by_ids", "paper_ids": []}', "needs a non-empty paper_ids"),
        ('{"action": "generate_by_id", "paper_id": "../../etc/passwd"}', "paper_id"),
        ('{"action": "generate_by_ids", "paper_ids": ["ok", "no spaces"]}', "paper_ids"),
        ('{"action": "generate_recent", "max_papers": 0}', "max_papers"),
        ('{"action": "generate_recent", "max_papers": 100000}', "max_papers"),
        ('{"action": "generate_by_title", "titel": "typo"}', "titel"),
        ('{"action": "get_paper_info"}', "paper_id or title"),
        ("x" * (300 * 1024), "limit"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(body: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_request(body)
    assert reason in str(exc.value)


def test_describe_names_the_target() -> None:
    r = GenerateRequest(action="generate_by_title", title="Deep Residual Learning", max_papers=2)
    assert "Deep Residual Learning" in r.describe() and "max_papers=2" in r.describe()


# ---------------------------------------------------------------- spool


def test_send_receive_delete_in_fifo_order(tmp_path: Path) -> None:
    q = SpoolRequestQueue(root=str(tmp_path / "spool"))
    ids = [q.send(json.dumps({"action": "generate_recent", "max_papers": n})) for n in (1, 2, 3)]
    assert len(set(ids)) == 3
    got = q.receive(max_messages=10)
    assert [m.message_id for m in got] == ids
    assert [json.loads(m.body)["max_papers"] for m in got] == [1, 2, 3]
    # Receiving does not remove: the sensor deletes only after its tick committed.
    assert [m.message_id for m in q.receive()] == ids
    q.delete(got[0])
    q.delete(got[0])  # twice is fine
    assert [m.message_id for m in q.receive()] == ids[1:]
    assert [m.message_id for m in q.receive(max_messages=1)] == ids[1:2]


def test_same_request_within_the_window_is_sent_once(tmp_path: Path) -> None:
    q = SpoolRequestQueue(root=str(tmp_path))
    request = GenerateRequest(action="generate_by_title", title="A paper")
    first = q.send_request(request)
    assert q.send_request(request) == first
    assert len(q.receive()) == 1
    # Outside the window it is a new request.
    for marker in (tmp_path / "dedup").iterdir():
        os.utime(marker, (0, 0))
    assert q.send_request(request) != first
    assert len(q.receive()) == 2


def test_dead_letter_moves_aside_with_reason_and_never_overwrites(tmp_path: Path) -> None:
    q = SpoolRequestQueue(root=str(tmp_path))
    q.send("garbage")
    good = q.send(json.dumps({"action": "generate_recent"}))
    bad = q.receive()[0]
    q.dead_letter(bad, "message body is not JSON")
    assert [m.message_id for m in q.receive()] == [good]
    records = q.dead_letters()
    assert records[0]["message_id"] == bad.message_id
    assert records[0]["body"] == "garbage"
    assert records[0]["reason"] == "message body is not JSON"
    # A second dead-lettering under the same file name keeps the first record.
    (q.messages_dir / bad.receipt_handle).write_text(json.dumps({"message_id": "x", "body": "again"}))
    q.dead_letter(QueueMessage("x", "again", bad.receipt_handle), "second")
    assert [r["reason"] for r in q.dead_letters()] == ["message body is not JSON", "second"]


def test_hand_dropped_and_corrupt_files_become_messages(tmp_path: Path) -> None:
    q = SpoolRequestQueue(root=str(tmp_path))
    q.messages_dir.mkdir(parents=True)
    (q.messages_dir / "my-request.json").write_text('{"action": "generate_by_title", "title": "X"}')
    (q.messages_dir / "zz-broken.json").write_bytes(b'{"message_id": "half-writ')
    (q.messages_dir / ".tmp-inflight").write_text("partial")  # a writer's temp file is not a message
    got = {m.message_id: m for m in q.receive()}
    assert set(got) == {"my-request", "zz-broken"}
    assert parse_request(got["my-request"].body).title == "X"
    with pytest.raises(InvalidRequest):
        parse_request(got["zz-broken"].body)
    q.dead_letter(got["zz-broken"], "corrupt")
    assert [m.message_id for m in q.receive()] == ["my-request"]


def test_receipt_handle_cannot_escape_the_spool(tmp_path: Path) -> None:
    q = SpoolRequestQueue(root=str(tmp_path / "spool"))
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    q.delete(QueueMessage("x", "", "../../precious.txt"))
    assert outside.read_text() == "keep me"


def test_default_root_is_under_annapurna_home(annapurna_home: Path) -> None:
    assert default_spool_root() == annapurna_home.resolve() / "queue" / "code-evaluation.fifo"
    q = SpoolRequestQueue()
    q.send('{"action": "generate_recent"}')
    assert len(list((annapurna_home / "queue" / "code-evaluation.fifo" / "messages").iterdir())) == 1


def test_oversized_send_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="limit"):
        SpoolRequestQueue(root=str(tmp_path)).send("x" * (257 * 1024))
