"""Store: keys, indexes kept in step with writes, replace, and both in-memory representations."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dynamo_snapshot.runtime.store import (
    NAMESPACE_INDEX,
    Representation,
    Store,
    key_of,
    namespace_index,
    split_key,
)

REPRESENTATIONS: list[Representation] = ["bytes", "dict"]


def pod(name: str, ns: str | None = "ns1", node: str = "", rv: str = "1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv, "labels": {"app": "x"}}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node}}


def by_node(obj: Any) -> list[str]:
    node = obj["spec"]["nodeName"]
    return [node] if node else []


def test_keys() -> None:
    assert key_of(pod("a")) == "ns1/a"
    assert key_of(pod("n", ns=None)) == "n"
    assert split_key("ns1/a") == ("ns1", "a")
    assert split_key("n") == (None, "n")
    with pytest.raises(ValueError, match=r"metadata\.name"):
        key_of({"metadata": {}})


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_upsert_get_delete(representation: Representation) -> None:
    s = Store(representation=representation)
    assert s.upsert(pod("a")) is False
    assert s.upsert(pod("a", rv="2")) is True
    got = s.get("ns1/a")
    assert got is not None
    assert got["metadata"]["resourceVersion"] == "2"
    assert s.get_by_name("a", "ns1") == got
    assert s.resource_version_of("ns1/a") == "2"
    assert "ns1/a" in s
    assert len(s) == 1
    assert s.keys() == ["ns1/a"]
    deleted = s.delete("ns1/a")
    assert deleted is not None
    assert deleted["metadata"]["name"] == "a"
    assert s.get("ns1/a") is None
    assert s.delete("ns1/a") is None
    assert len(s) == 0


def test_bytes_representation_returns_fresh_objects() -> None:
    s = Store(representation="bytes")
    s.upsert(pod("a"))
    first = s.get("ns1/a")
    assert isinstance(first, dict)
    first["metadata"]["labels"]["app"] = "mutated"
    second = s.get("ns1/a")
    assert second is not None
    assert second["metadata"]["labels"]["app"] == "x"
    assert first is not second


def test_dict_representation_returns_the_cached_object_without_copying() -> None:
    s = Store(representation="dict")
    obj = pod("a")
    s.upsert(obj)
    assert s.get("ns1/a") is obj
    assert s.list()[0] is obj


def test_bytes_representation_stores_compact_json() -> None:
    s = Store(representation="bytes")
    obj = pod("a")
    s.upsert(obj)
    entry = s._items["ns1/a"]
    assert entry.data == orjson.dumps(obj)


def test_unknown_representation_is_refused() -> None:
    with pytest.raises(ValueError, match="representation"):
        Store(representation="pickle")  # type: ignore[arg-type]


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_indexes_follow_updates_and_deletes(representation: Representation) -> None:
    s = Store(representation=representation, indexers={"node": by_node})
    s.upsert(pod("a", node="n1"))
    s.upsert(pod("b", node="n1"))
    s.upsert(pod("c"))
    assert sorted(o["metadata"]["name"] for o in s.by_index("node", "n1")) == ["a", "b"]
    s.upsert(pod("a", node="n2", rv="2"))
    assert [o["metadata"]["name"] for o in s.by_index("node", "n1")] == ["b"]
    assert s.index_keys("node", "n2") == ["ns1/a"]
    s.delete("ns1/b")
    assert s.by_index("node", "n1") == []
    assert s.index_values("node") == ["n2"]
    with pytest.raises(KeyError, match="nope"):
        s.by_index("nope", "x")


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_indexer_added_later_indexes_existing_objects(representation: Representation) -> None:
    s = Store(representation=representation)
    s.upsert(pod("a", node="n1"))
    s.upsert(pod("b", ns="ns2", node="n1"))
    s.add_indexer("node", by_node)
    s.add_indexer(NAMESPACE_INDEX, namespace_index)
    assert sorted(s.index_keys("node", "n1")) == ["ns1/a", "ns2/b"]
    assert s.index_keys(NAMESPACE_INDEX, "ns2") == ["ns2/b"]
    with pytest.raises(ValueError, match="already exists"):
        s.add_indexer("node", by_node)


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_replace_makes_the_store_equal_the_list(representation: Representation) -> None:
    s = Store(representation=representation, indexers={"node": by_node})
    s.upsert(pod("old", node="n1"))
    s.upsert(pod("kept", node="n1"))
    s.replace([pod("kept", node="n2", rv="5"), pod("new", node="n2")])
    assert sorted(s.keys()) == ["ns1/kept", "ns1/new"]
    assert s.by_index("node", "n1") == []
    assert sorted(s.index_keys("node", "n2")) == ["ns1/kept", "ns1/new"]
    assert s.resource_version_of("ns1/kept") == "5"


def test_list_returns_every_object() -> None:
    s = Store()
    for i in range(5):
        s.upsert(pod(f"p{i}"))
    assert sorted(o["metadata"]["name"] for o in s.list()) == [f"p{i}" for i in range(5)]
    assert sorted(s) == [f"ns1/p{i}" for i in range(5)]
