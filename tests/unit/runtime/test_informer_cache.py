"""InformerCache: one informer per view, started when the cache runs (also late ones), cached
reads that pick the covering informer, label selectors, and a sync timeout that names the
resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import pytest

from dynamo_snapshot.runtime.cache import (
    CacheSyncTimeout,
    InformerCache,
    NoInformer,
    View,
    label_selector_matcher,
)
from dynamo_snapshot.runtime.client import Client, RawList
from dynamo_snapshot.runtime.errors import Forbidden, NotFound
from dynamo_snapshot.runtime.resource import CONFIGMAPS, NAMESPACES, PODS
from tests.support import raw_list


def obj(name: str, ns: str | None = "ns", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": "1", "labels": labels}
    if ns:
        meta["namespace"] = ns
    return {"metadata": meta}


class FakeServer:
    """FAKE API server: lists answer from ``objects`` per plural (or Forbidden), watches never
    end. Used to test the cache's bookkeeping; the real server is in tests/integration."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], forbidden: set[str]) -> None:
        self.objects = objects
        self.forbidden = forbidden
        self.list_calls: list[tuple[str, str | None, str | None]] = []

    async def list_raw(self, resource: Any, namespace: str | None = None, **kw: Any) -> RawList:
        self.list_calls.append((resource.plural, namespace, kw.get("label_selector")))
        if resource.plural in self.forbidden:
            raise Forbidden(403, "Forbidden", f"cannot list {resource.plural}")
        items = [
            o
            for o in self.objects.get(resource.plural, [])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]
        return raw_list(items, "1")

    async def watch(self, resource: Any, namespace: Any = None, **kw: Any) -> AsyncIterator[Any]:
        await anyio.sleep_forever()
        yield ("ADDED", {})  # pragma: no cover


def cache_for(
    objects: dict[str, list[dict[str, Any]]], forbidden: set[str] | None = None
) -> tuple[InformerCache, FakeServer]:
    fake = FakeServer(objects, forbidden or set())
    return InformerCache(cast(Client, fake)), fake


def test_one_informer_per_view() -> None:
    cache, _ = cache_for({})
    a = cache.informer_for(PODS)
    assert cache.informer_for(PODS) is a
    assert cache.informer_for(PODS, label_selector="") is a
    assert cache.informer_for(PODS, namespace="x") is not a
    assert cache.informer_for(PODS, label_selector="app=y") is not a
    # Cluster-scoped: the namespace is irrelevant.
    assert cache.informer_for(NAMESPACES, namespace="x") is cache.informer_for(NAMESPACES)
    assert len(cache.informers()) == 4


async def test_run_starts_informers_added_before_and_after_and_reads_from_them() -> None:
    cache, fake = cache_for(
        {
            "configmaps": [obj("a", app="x"), obj("b", app="y"), obj("c", ns="other", app="x")],
            "namespaces": [obj("ns", ns=None)],
        }
    )
    cache.informer_for(CONFIGMAPS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await cache.wait_for_sync(5)
        assert cache.has_synced()
        # Requested after start: started at once.
        late = cache.informer_for(NAMESPACES)
        await cache.wait_for_sync(5)
        assert late.has_synced()
        tg.cancel_scope.cancel()

    got = await cache.get(CONFIGMAPS, "a", "ns")
    assert got["metadata"]["labels"] == {"app": "x"}
    with pytest.raises(NotFound):
        await cache.get(CONFIGMAPS, "missing", "ns")
    assert (await cache.get(NAMESPACES, "ns"))["metadata"]["name"] == "ns"
    assert names(await cache.list(CONFIGMAPS)) == ["a", "b", "c"]
    assert names(await cache.list(CONFIGMAPS, "ns")) == ["a", "b"]
    assert names(await cache.list(CONFIGMAPS, "ns", labels="app=x")) == ["a"]
    assert names(await cache.list(CONFIGMAPS, fields="metadata.namespace=other")) == ["c"]
    assert names(await cache.list(CONFIGMAPS, fields="metadata.name!=a")) == ["b", "c"]
    assert ("namespaces", None, None) in fake.list_calls


def names(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


async def test_reads_prefer_the_most_specific_unfiltered_informer() -> None:
    cache, _ = cache_for({})
    everywhere = cache.informer_for(CONFIGMAPS)
    filtered = cache.informer_for(CONFIGMAPS, namespace="ns", label_selector="app=x")
    exact = cache.informer_for(CONFIGMAPS, namespace="ns")
    await everywhere.reflector.sink.replace([obj("a", app="z")], "1")
    await filtered.reflector.sink.replace([], "1")
    await exact.reflector.sink.replace([obj("b")], "1")
    assert (await cache.get(CONFIGMAPS, "b", "ns"))["metadata"]["name"] == "b"
    with pytest.raises(NotFound):
        await cache.get(CONFIGMAPS, "a", "ns")
    # Another namespace is covered by the all-namespaces informer, which has "a" in "ns" only.
    with pytest.raises(NotFound):
        await cache.get(CONFIGMAPS, "a", "elsewhere")
    assert await cache.list(CONFIGMAPS, "elsewhere") == []
    assert names(await cache.list(CONFIGMAPS, "ns")) == ["b"]


async def test_a_filtered_view_never_answers_a_read_it_cannot_hold() -> None:
    """Defect 3: an all-namespaces informer and a label-filtered one for "ns": the filtered one
    cannot prove absence, so a get in "ns" must come from the complete view."""
    cache, _ = cache_for({})
    everywhere = cache.informer_for(PODS)
    filtered = cache.informer_for(PODS, namespace="ns", label_selector="app=x")
    await everywhere.reflector.sink.replace([obj("p", app="other"), obj("q", app="x")], "1")
    await filtered.reflector.sink.replace([obj("q", app="x")], "1")
    assert (await cache.get(PODS, "p", "ns"))["metadata"]["name"] == "p"
    assert names(await cache.list(PODS, "ns")) == ["p", "q"]
    # The filtered view answers when named, and for exactly its own selector.
    with pytest.raises(NotFound):
        await cache.get(PODS, "p", "ns", view=View("ns", labels="app=x"))
    assert names(await cache.list(PODS, "ns", view=View("ns", labels="app=x"))) == ["q"]
    with pytest.raises(NoInformer):
        await cache.get(PODS, "p", "ns", view=View("ns", labels="app=nope"))


async def test_only_a_filtered_view_means_no_answer() -> None:
    cache, _ = cache_for({})
    filtered = cache.informer_for(PODS, namespace="ns", label_selector="app=x")
    await filtered.reflector.sink.replace([obj("q", app="x")], "1")
    with pytest.raises(NoInformer):
        await cache.get(PODS, "q", "ns")
    with pytest.raises(NoInformer):
        await cache.list(PODS, "ns")
    # The same selector may be answered from it (namespace and selector match exactly).
    assert names(await cache.list(PODS, "ns", labels="app=x")) == ["q"]


async def test_a_namespaced_get_without_namespace_is_an_error() -> None:
    cache, _ = cache_for({})
    await cache.informer_for(PODS).reflector.sink.replace([obj("p")], "1")
    with pytest.raises(ValueError, match="namespace"):
        await cache.get(PODS, "p")
    with pytest.raises(ValueError, match="namespace"):
        await cache.get(PODS, "p", "")


async def test_indexes_belong_to_the_resource_and_serve_every_view() -> None:
    cache, _ = cache_for({})

    def by_app(o: Any) -> list[str]:
        return [o["metadata"]["labels"]["app"]] if "app" in o["metadata"]["labels"] else []

    early = cache.informer_for(CONFIGMAPS)
    cache.add_index(CONFIGMAPS, "app", by_app)
    cache.add_index(CONFIGMAPS, "app", by_app)  # a second controller, same function: fine
    with pytest.raises(ValueError, match="another function"):
        cache.add_index(CONFIGMAPS, "app", lambda o: [])
    late = cache.informer_for(CONFIGMAPS, namespace="ns")
    await early.reflector.sink.replace(
        [obj("a", app="x"), obj("b", ns="o", app="x"), obj("c")], "1"
    )
    await late.reflector.sink.replace([obj("a", app="x"), obj("c")], "1")
    assert names(await cache.list(CONFIGMAPS, index=("app", "x"))) == ["a", "b"]
    assert names(await cache.list(CONFIGMAPS, "o", index=("app", "x"))) == ["b"]
    assert names(await cache.list(CONFIGMAPS, "ns", index=("app", "x"))) == ["a"]
    assert names(await cache.list(CONFIGMAPS, view=View("ns"), index=("app", "x"))) == ["a"]
    assert cache.index_function(CONFIGMAPS, "app") is by_app


def test_a_read_nothing_covers_says_what_to_do() -> None:
    cache, _ = cache_for({})
    cache.informer_for(PODS, namespace="one")
    with pytest.raises(NoInformer, match="informer_for"):
        cache.get_nowait(PODS, "p", "two")
    with pytest.raises(NoInformer, match="configmaps"):
        cache.list_nowait(CONFIGMAPS)


async def test_sync_timeout_names_the_resource_and_rbac() -> None:
    cache, _ = cache_for({"configmaps": []}, forbidden={"pods"})
    cache.informer_for(CONFIGMAPS)
    cache.informer_for(PODS, namespace="ns")
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        with pytest.raises(CacheSyncTimeout) as info:
            await cache.wait_for_sync(0.3)
        tg.cancel_scope.cancel()
    message = str(info.value)
    assert "pods in ns" in message
    assert "configmaps" not in message
    assert "RBAC" in message
    assert info.value.pending == ["pods in ns"]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=x", {"app": "x"}, True),
        ("app==x", {"app": "y"}, False),
        ("app!=x", {}, True),
        ("app!=x", {"app": "x"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": ""}, False),
        ("!app", {}, True),
        ("env in (a, b),tier notin (c)", {"env": "b", "tier": "d"}, True),
        ("env in (a, b),tier notin (c)", {"env": "b", "tier": "c"}, False),
        ("env in (a,b)", {}, False),
        ("a=1, b=2", {"a": "1", "b": "2"}, True),
        ("a=1,b=2", {"a": "1"}, False),
    ],
)
def test_label_selector_matcher(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert label_selector_matcher(selector)(labels) is expected


def test_label_selector_matcher_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid label selector"):
        label_selector_matcher("a b c")
