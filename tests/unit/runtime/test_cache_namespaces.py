"""A cache restricted to several namespaces (controller-runtime's DefaultNamespaces): one list and
watch per namespace into one merged store, never a cluster-wide list of a namespaced kind; reads
outside the set fail loudly; a relist of one namespace leaves the others alone; sync covers all;
a controller drops requests for namespaces it cannot read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    ControllerBuilder,
    Manager,
    ManagerOptions,
    Request,
)
from dynamo_snapshot.runtime.cache import (
    CacheSyncTimeout,
    InformerCache,
    NamespaceNotCached,
    NoInformer,
    View,
)
from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.informer import SharedInformer
from dynamo_snapshot.runtime.resource import NAMESPACES
from tests.unit.runtime.test_informer import Recorder
from tests.unit.runtime.test_informer_cache import FakeServer, names, obj
from tests.unit.runtime.test_manager_unit import stand_in_api_client

OBJECTS = {
    "configmaps": [obj("a1", ns="a", app="x"), obj("b1", ns="b"), obj("c1", ns="c", app="x")],
    "namespaces": [obj("a", ns=None), obj("b", ns=None), obj("c", ns=None)],
}


def restricted(
    forbidden: set[str] | None = None, objects: dict[str, list[dict[str, Any]]] | None = None
) -> tuple[InformerCache, FakeServer]:
    fake = FakeServer(objects or OBJECTS, forbidden or set())
    return InformerCache(cast(Client, fake), namespaces=["b", "a", ""]), fake


async def synced(cache: InformerCache) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await cache.wait_for_sync(5)
        tg.cancel_scope.cancel()


async def test_one_list_per_namespace_merged_into_one_store_and_reads_across_them() -> None:
    cache, fake = restricted()
    assert cache.namespaces == frozenset({"a", "b"})
    cms = cache.informer_for(CONFIGMAPS)
    assert cms.namespaces == frozenset({"a", "b"})
    assert [r.namespace for r in cms.reflectors] == ["a", "b"]
    assert cache.informer_for(CONFIGMAPS, ["a", "b"]) is cms  # the same view, shared
    cache.informer_for(NAMESPACES)
    await synced(cache)

    # Namespaced kinds: one list per namespace, never a cluster-wide one. Cluster-scoped: one.
    assert sorted(c for c in fake.list_calls if c[0] == "configmaps") == [
        ("configmaps", "a", None),
        ("configmaps", "b", None),
    ]
    assert [c for c in fake.list_calls if c[0] == "namespaces"] == [("namespaces", None, None)]
    assert names(list(map(dict, cms.store.list()))) == ["a1", "b1"]
    # A list without a namespace means every namespace of the cache.
    assert names(await cache.list(CONFIGMAPS)) == ["a1", "b1"]
    assert names(await cache.list(CONFIGMAPS, "b")) == ["b1"]
    assert names(await cache.list(CONFIGMAPS, labels="app=x")) == ["a1"]
    assert (await cache.get(CONFIGMAPS, "b1", "b"))["metadata"]["name"] == "b1"
    assert names(await cache.list(NAMESPACES)) == ["a", "b", "c"]
    assert "configmaps in a, b" in cms.name


async def test_reads_and_views_outside_the_namespaces_fail_instead_of_answering_empty() -> None:
    cache, _ = restricted()
    cache.informer_for(CONFIGMAPS)
    await synced(cache)
    with pytest.raises(NamespaceNotCached, match=r"namespace c: not cached.*a, b"):
        await cache.get(CONFIGMAPS, "c1", "c")
    with pytest.raises(NamespaceNotCached, match="namespace c"):
        await cache.list(CONFIGMAPS, "c")
    with pytest.raises(NamespaceNotCached, match="namespace c"):
        cache.informer_for(CONFIGMAPS, "c")
    with pytest.raises(NamespaceNotCached, match="namespace c"):
        cache.informer_for(CONFIGMAPS, ["a", "c"])
    with pytest.raises(NamespaceNotCached):
        await cache.list(CONFIGMAPS, view=View("c"))
    # Not a NoInformer: the manager's client must not quietly read the server instead.
    assert not issubclass(NamespaceNotCached, NoInformer)
    assert not cache.covers(CONFIGMAPS, "c")
    assert cache.covers(CONFIGMAPS, "a")


async def test_a_one_namespace_view_inside_the_set_is_its_own_informer() -> None:
    cache, _ = restricted()
    both = cache.informer_for(CONFIGMAPS)
    only_a = cache.informer_for(CONFIGMAPS, "a")
    assert only_a is not both
    assert only_a.namespaces == frozenset({"a"})
    assert len(only_a.reflectors) == 1
    await synced(cache)
    # A read of "a" prefers the exact view; a read of every namespace needs the wide one.
    assert names(await cache.list(CONFIGMAPS, "a")) == ["a1"]
    assert names(await cache.list(CONFIGMAPS)) == ["a1", "b1"]


async def test_indexes_cover_every_namespace() -> None:
    cache, _ = restricted()
    cache.add_index(CONFIGMAPS, "first", lambda o: [o["metadata"]["name"][0]])
    cache.informer_for(CONFIGMAPS)
    await synced(cache)
    assert names(await cache.list(CONFIGMAPS, index=("first", "a"))) == ["a1"]
    assert names(await cache.list(CONFIGMAPS, index=("first", "b"))) == ["b1"]
    assert await cache.list(CONFIGMAPS, "a", index=("first", "b")) == []


async def test_sync_waits_for_every_namespace_and_names_the_missing_one() -> None:
    class OneNamespaceForbidden(FakeServer):
        async def list_raw(self, resource: Any, namespace: str | None = None, **kw: Any) -> Any:
            if namespace == "b":
                self.forbidden.add(resource.plural)
            try:
                return await super().list_raw(resource, namespace, **kw)
            finally:
                self.forbidden.discard(resource.plural)

    fake = OneNamespaceForbidden(OBJECTS, set())
    cache = InformerCache(cast(Client, fake), namespaces=["a", "b"])
    cms = cache.informer_for(CONFIGMAPS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        with pytest.raises(CacheSyncTimeout, match="configmaps in a, b"):
            await cache.wait_for_sync(0.3)
        tg.cancel_scope.cancel()
    # Namespace a listed fine, and its objects are there; the informer is not synced without b.
    assert names(list(map(dict, cms.store.list()))) == ["a1"]
    assert not cms.has_synced()
    assert not cache.has_synced()


async def test_a_relist_of_one_namespace_leaves_the_others_alone() -> None:
    inf = SharedInformer(cast(Client, None), CONFIGMAPS, namespace=["a", "b"])
    rec = Recorder()
    inf.add_event_handler(rec)
    a, b = (r.sink for r in inf.reflectors)
    await a.replace([obj("a1", ns="a"), obj("a2", ns="a")], "1")
    assert not inf.has_synced()  # b has not listed yet
    await b.replace([obj("b1", ns="b")], "1")
    assert inf.has_synced()
    rec.events.clear()
    # a relists (after a 410, say) without a2: only a2 is announced gone; b1 stays.
    await a.replace([obj("a1", ns="a")], "2")
    assert names(list(map(dict, inf.store.list()))) == ["a1", "b1"]
    assert rec.events == [("tombstone", "a2", "1")]


def test_a_single_namespace_and_all_namespaces_keep_one_reflector() -> None:
    one = SharedInformer(cast(Client, None), CONFIGMAPS, namespace="a")
    assert (one.namespaces, len(one.reflectors), one.reflector.namespace) == (
        frozenset({"a"}),
        1,
        "a",
    )
    every = SharedInformer(cast(Client, None), CONFIGMAPS, namespace=[])
    assert (every.namespaces, len(every.reflectors), every.reflector.namespace) == (None, 1, None)
    cluster = SharedInformer(cast(Client, None), NAMESPACES, namespace=["a", "b"])
    assert (cluster.namespaces, len(cluster.reflectors)) == (None, 1)


async def test_manager_restricts_its_cache_and_controllers_drop_other_namespaces() -> None:
    mgr = Manager(
        stand_in_api_client(),
        ManagerOptions(handle_signals=False, namespaces=("a",), namespace="b"),
    )
    assert mgr.cache.namespaces == frozenset({"a", "b"})

    # A cluster-scoped kind maps to For objects in any namespace; only a and b are ours.
    def to_configmaps(o: Mapping[str, Any]) -> list[Request]:
        return [Request(o["metadata"]["name"], "cm")]

    ctl = (
        ControllerBuilder(mgr)
        .for_(CONFIGMAPS)
        .watches(NAMESPACES, to_configmaps)
        .complete(lambda req: anyio.lowlevel.checkpoint())
    )
    assert mgr.cache.informer_for(CONFIGMAPS).namespaces == frozenset({"a", "b"})
    namespaces = mgr.cache.informer_for(NAMESPACES)
    await namespaces.reflector.sink.replace(OBJECTS["namespaces"], "1")
    assert set(ctl.queue._queue) == {Request("a", "cm"), Request("b", "cm")}
