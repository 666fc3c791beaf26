"""SharedInformer: what handlers hear for watch events and relists, tombstones, resync, the
transform, late handlers, and has_synced.

The reflector's output is fed straight into the informer's sink, which is the informer's only
input; the reflector itself is tested in test_reflector.py and, with the informer, against a real
API server in tests/integration/runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from dynamo_snapshot.runtime.client import Client, RawList
from dynamo_snapshot.runtime.informer import (
    DeletedFinalStateUnknown,
    EventHandler,
    FuncHandler,
    SharedInformer,
    drop_managed_fields,
    object_of,
)
from dynamo_snapshot.runtime.reflector import ReflectorSink
from dynamo_snapshot.runtime.resource import CONFIGMAPS, NAMESPACES
from dynamo_snapshot.runtime.store import NAMESPACE_INDEX, Obj, Representation
from tests.support import raw_list, wait_for


def cm(name: str, rv: str, ns: str = "ns", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
        },
        "data": dict(data),
    }


class Recorder:
    """An EventHandler that writes down what it hears as (event, name, rv) tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def on_add(self, obj: Obj) -> None:
        self.events.append(("add", obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))

    def on_update(self, old: Obj, new: Obj) -> None:
        self.events.append(
            (
                "update",
                new["metadata"]["name"],
                old["metadata"]["resourceVersion"],
                new["metadata"]["resourceVersion"],
            )
        )

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        kind = "tombstone" if isinstance(obj, DeletedFinalStateUnknown) else "delete"
        o = object_of(obj)
        self.events.append((kind, o["metadata"]["name"], o["metadata"]["resourceVersion"]))


def informer(**kw: Any) -> tuple[SharedInformer, ReflectorSink]:
    inf = SharedInformer(cast(Client, None), CONFIGMAPS, **kw)
    return inf, inf.reflector.sink


def test_recorder_is_an_event_handler() -> None:
    assert isinstance(Recorder(), EventHandler)
    assert isinstance(FuncHandler(), EventHandler)


@pytest.mark.parametrize("representation", ["bytes", "dict"])
async def test_watch_events_reach_store_then_handlers(representation: Representation) -> None:
    inf, sink = informer(representation=representation)
    rec = Recorder()
    seen_in_store: list[bool] = []
    inf.add_event_handler(rec)
    # Data flows store → handlers: a handler already finds the object in the store.
    inf.add_event_handler(FuncHandler(on_add=lambda o: seen_in_store.append("ns/a" in inf.store)))

    await sink.replace([], "1")
    sink.added(cm("a", "2"))
    sink.modified(cm("a", "3", k="v"))
    sink.deleted(cm("a", "4"))

    assert rec.events == [("add", "a", "2"), ("update", "a", "2", "3"), ("delete", "a", "4")]
    assert seen_in_store == [True]
    assert len(inf.store) == 0


async def test_an_added_event_for_a_cached_object_is_an_update() -> None:
    inf, sink = informer()
    rec = Recorder()
    inf.add_event_handler(rec)
    await sink.replace([cm("a", "1")], "1")
    sink.added(cm("a", "2"))
    assert rec.events == [("add", "a", "1"), ("update", "a", "1", "2")]


async def test_relist_announces_missed_changes_with_tombstones_and_equals_the_list() -> None:
    inf, sink = informer()
    rec = Recorder()
    inf.add_event_handler(rec)
    await sink.replace([cm("same", "1"), cm("changed", "2"), cm("gone", "3")], "3")
    rec.events.clear()

    await sink.replace([cm("same", "1"), cm("changed", "7"), cm("new", "8")], "9")

    assert sorted(rec.events) == [
        ("add", "new", "8"),
        ("tombstone", "gone", "3"),
        ("update", "changed", "2", "7"),
    ]
    assert sorted(inf.store.keys()) == ["ns/changed", "ns/new", "ns/same"]
    got = inf.store.get("ns/changed")
    assert got is not None
    assert got["metadata"]["resourceVersion"] == "7"


async def test_tombstone_carries_key_and_last_known_state() -> None:
    inf, sink = informer()
    tombs: list[Any] = []
    inf.add_event_handler(FuncHandler(on_delete=tombs.append))
    await sink.replace([cm("gone", "3", k="last")], "3")
    await sink.replace([], "5")
    [tomb] = tombs
    assert isinstance(tomb, DeletedFinalStateUnknown)
    assert tomb.key == "ns/gone"
    assert tomb.obj["data"] == {"k": "last"}


async def test_transform_drops_managed_fields_by_default_and_can_be_replaced() -> None:
    inf, sink = informer()
    seen: list[Obj] = []
    inf.add_event_handler(FuncHandler(on_add=seen.append))
    await sink.replace([cm("a", "1")], "1")
    sink.added(cm("b", "2"))
    for obj in [*seen, *inf.store.list()]:
        assert "managedFields" not in obj["metadata"]
    assert drop_managed_fields({"kind": "X"}) == {"kind": "X"}

    def strip_data(obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop("data", None)
        return obj

    inf2, sink2 = informer(transform=strip_data)
    await sink2.replace([cm("a", "1", k="v")], "1")
    kept = inf2.store.get("ns/a")
    assert kept is not None
    assert "data" not in kept
    assert kept["metadata"]["managedFields"] == [{"manager": "kubectl"}]

    inf3, sink3 = informer(transform=None)
    await sink3.replace([cm("a", "1")], "1")
    assert "managedFields" in (inf3.store.get("ns/a") or {})["metadata"]


async def test_a_late_handler_first_hears_every_cached_object() -> None:
    inf, sink = informer()
    await sink.replace([cm("a", "1"), cm("b", "2")], "2")
    rec = Recorder()
    inf.add_event_handler(rec)
    assert sorted(rec.events) == [("add", "a", "1"), ("add", "b", "2")]
    sink.modified(cm("a", "3"))
    assert rec.events[-1] == ("update", "a", "1", "3")


async def test_a_failing_handler_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    inf, sink = informer()

    def boom(obj: Obj) -> None:
        raise RuntimeError("handler bug")

    rec = Recorder()
    inf.add_event_handler(FuncHandler(on_add=boom))
    inf.add_event_handler(rec)
    await sink.replace([cm("a", "1")], "1")
    assert rec.events == [("add", "a", "1")]
    assert "ns/a" in caplog.text
    assert "handler bug" in caplog.text


async def test_removed_handler_hears_nothing_more() -> None:
    inf, sink = informer()
    rec = Recorder()
    inf.add_event_handler(rec)
    await sink.replace([cm("a", "1")], "1")
    inf.remove_event_handler(rec)
    sink.modified(cm("a", "2"))
    assert rec.events == [("add", "a", "1")]


async def test_resync_delivers_an_update_of_each_object_to_itself() -> None:
    inf, sink = informer()
    rec = Recorder()
    inf.add_event_handler(rec)
    await sink.replace([cm("a", "1"), cm("b", "2")], "2")
    rec.events.clear()
    await inf.resync()
    assert sorted(rec.events) == [("update", "a", "1", "1"), ("update", "b", "2", "2")]


async def test_namespaced_stores_have_a_namespace_index_and_extra_indexers() -> None:
    inf, sink = informer(indexers={"data-k": lambda o: [o.get("data", {}).get("k", "")]})
    await sink.replace([cm("a", "1", ns="x", k="1"), cm("b", "2", ns="y", k="1")], "2")
    assert [o["metadata"]["name"] for o in inf.store.by_index(NAMESPACE_INDEX, "y")] == ["b"]
    assert len(inf.store.by_index("data-k", "1")) == 2
    inf.add_indexer("name", lambda o: [o["metadata"]["name"]])
    assert inf.store.index_keys("name", "a") == ["x/a"]
    cluster = SharedInformer(cast(Client, None), NAMESPACES)
    assert NAMESPACE_INDEX not in cluster.store.index_names()


async def test_has_synced_after_the_first_list() -> None:
    inf, sink = informer()
    assert not inf.has_synced()
    assert await inf.wait_for_sync(0.01) is False

    async def sync_soon() -> None:
        await anyio.lowlevel.checkpoint()
        await sink.replace([cm("a", "1")], "1")

    async with anyio.create_task_group() as tg:
        tg.start_soon(sync_soon)
        assert await inf.wait_for_sync(5) is True
    assert inf.has_synced()
    assert await inf.wait_for_sync(0) is True


class _OneListFake:
    """FAKE API server: one empty list, then a watch that never ends (see test_reflector.py for
    why the reflector's unit tests use a fake)."""

    def __init__(self) -> None:
        self.lists = 0

    async def list_raw(self, resource: Any, namespace: str | None = None, **kw: Any) -> RawList:
        self.lists += 1
        return raw_list([cm("a", "5")], "5")

    async def watch(self, resource: Any, namespace: Any = None, **kw: Any) -> AsyncIterator[Any]:
        await anyio.sleep_forever()
        yield ("ADDED", {})  # pragma: no cover


async def test_run_syncs_resyncs_and_refuses_a_second_run() -> None:
    fake = _OneListFake()
    inf = SharedInformer(cast(Client, fake), CONFIGMAPS, resync_period=0.01)
    rec = Recorder()
    inf.add_event_handler(rec)
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        assert await inf.wait_for_sync(5)
        await wait_for(lambda: ("update", "a", "5", "5") in rec.events, 5, "a resync")
        with pytest.raises(RuntimeError, match="already running"):
            await inf.run()
        tg.cancel_scope.cancel()
    assert rec.events[0] == ("add", "a", "5")
    assert fake.lists == 1


async def test_a_delete_for_an_unknown_key_is_not_announced() -> None:
    inf, sink = informer()
    rec = Recorder()
    inf.add_event_handler(rec)
    await sink.replace([cm("a", "1")], "1")
    sink.deleted(cm("never-seen", "2"))
    sink.deleted(cm("a", "3"))
    sink.deleted(cm("a", "4"))  # twice: the second one is for a key no longer held
    assert rec.events == [("add", "a", "1"), ("delete", "a", "3")]


async def test_an_object_the_index_or_transform_rejects_is_skipped_and_counted() -> None:
    skipped: list[tuple[str, str]] = []

    def picky(obj: Any) -> list[str]:
        if obj["metadata"]["name"] == "bad":
            raise KeyError("spec")
        return ["x"]

    inf, sink = informer(
        indexers={"picky": picky}, on_skip=lambda res, err: skipped.append((res, repr(err)))
    )
    rec = Recorder()
    inf.add_event_handler(rec)
    await sink.replace([cm("good", "1"), cm("bad", "2")], "2")
    assert inf.has_synced()
    assert sorted(inf.store.keys()) == ["ns/good"]
    sink.added(cm("bad", "3"))
    sink.modified(cm("good", "4"))
    assert rec.events == [("add", "good", "1"), ("update", "good", "1", "4")]
    # Reported once per rejected object, naming the resource and the index.
    assert [r for r, _ in skipped] == ["configmaps", "configmaps"]
    assert all("picky" in e for _, e in skipped)
    assert inf.skipped == 2
