from pathlib import Path

import pytest

from annapurna_resources.object_store import ObjectExistsError
from annapurna_resources.object_store.local import LocalObjectStore


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(root=str(tmp_path / "objects"))


def test_layout_is_bucket_then_key(store: LocalObjectStore, tmp_path: Path) -> None:
    store.put("llm-research-papers", "papers/iclr/2025/x.json", b"{}")
    assert (tmp_path / "objects" / "llm-research-papers" / "papers/iclr/2025/x.json").read_bytes() == b"{}"


def test_put_once_refuses_other_bytes_and_keeps_the_first(store: LocalObjectStore) -> None:
    assert store.put_once("b", "k.pdf", b"first") is True
    assert store.put_once("b", "k.pdf", b"first") is False
    with pytest.raises(ObjectExistsError):
        store.put_once("b", "k.pdf", b"second")
    assert store.get("b", "k.pdf") == b"first"


def test_list_by_prefix_in_key_order_and_after_a_key(store: LocalObjectStore) -> None:
    for key in ["papers/iclr/2025/b.pdf", "papers/iclr/2025/a.pdf", "papers/iclr/2024/c.pdf", "papers/icml/2025/d.pdf"]:
        store.put("b", key, b"x")
    assert store.list_keys("b", "papers/iclr/2025/") == ["papers/iclr/2025/a.pdf", "papers/iclr/2025/b.pdf"]
    after = [o.key for o in store.list_objects("b", "papers/iclr/", start_after="papers/iclr/2024/c.pdf")]
    assert after == ["papers/iclr/2025/a.pdf", "papers/iclr/2025/b.pdf"]
    assert store.list_keys("b", "papers/nope/") == []


def test_missing_key_and_escaping_keys(store: LocalObjectStore) -> None:
    with pytest.raises(KeyError):
        store.get("b", "missing")
    for bad in ["../outside", "/abs", "a/../../b"]:
        with pytest.raises(ValueError):
            store.put("b", bad, b"x")
