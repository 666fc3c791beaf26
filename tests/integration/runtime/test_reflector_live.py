"""Reflector against a real kube-apiserver: a paged initial list is complete, and watches
receive bookmarks that advance the resourceVersion and then resume from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.reflector import Reflector
from dynamo_snapshot.runtime.resource import CONFIGMAPS, Resource
from tests.support import wait_for


class RecordingClient(Client):
    """The real Client, remembering the arguments and answers of its lists and watches."""

    def __init__(self, api: ApiClient) -> None:
        super().__init__(api)
        self.lists: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.watch_rvs: list[str | None] = []

    async def list_raw(self, resource: Resource, namespace: str | None = None, **kw: Any) -> Any:
        answer = await super().list_raw(resource, namespace, **kw)
        self.lists.append((kw, answer.metadata))
        return answer

    def watch(self, resource: Resource, namespace: str | None = None, **kw: Any) -> Any:
        self.watch_rvs.append(kw.get("resource_version"))
        return super().watch(resource, namespace, **kw)


class Sink:
    def __init__(self) -> None:
        self.replaced: list[tuple[list[str], str]] = []
        self.events: list[tuple[str, str]] = []

    async def replace(self, items: Iterable[dict[str, Any]], resource_version: str) -> None:
        self.replaced.append((sorted(i["metadata"]["name"] for i in items), resource_version))

    def added(self, obj: dict[str, Any]) -> None:
        self.events.append(("added", obj["metadata"]["name"]))

    def modified(self, obj: dict[str, Any]) -> None:
        self.events.append(("modified", obj["metadata"]["name"]))

    def deleted(self, obj: dict[str, Any]) -> None:
        self.events.append(("deleted", obj["metadata"]["name"]))


async def test_paged_initial_list_is_complete(kube_api: ApiClient, namespace: str) -> None:
    rc = RecordingClient(kube_api)
    names = [f"cm{i}" for i in range(7)]
    for name in names:
        await rc.create(CONFIGMAPS, {"metadata": {"name": name}}, namespace)
    expected = sorted([*names, "kube-root-ca.crt"])

    async def watch_cache_has_all() -> bool:
        # kube-root-ca.crt is created by the controller-manager at its own pace, and a list at
        # "0" is answered by the watch cache: wait until it holds all of them, so that what the
        # reflector lists next can be compared with an exact set.
        page = await Client(kube_api).list(CONFIGMAPS, namespace, resource_version="0")
        return sorted(i["metadata"]["name"] for i in page["items"]) == expected

    await wait_for(watch_cache_has_all, 30, "the watch cache to hold every ConfigMap")
    sink = Sink()
    r = Reflector(rc, CONFIGMAPS, sink, namespace=namespace, page_size=3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(r.run)
        await wait_for(lambda: sink.replaced, 30, "the initial list")
        tg.cancel_scope.cancel()
    [(listed, rv)] = sink.replaced
    assert listed == expected
    first_kw, _ = rc.lists[0]
    assert first_kw["resource_version"] == "0"
    assert first_kw["limit"] == 3
    # The server may page a list at "0" or serve it whole from its watch cache; either way the
    # result is complete, and the reflector remembers whether it paged.
    paged = any(meta.get("continue") for _, meta in rc.lists)
    assert r._paginated is paged
    assert len(rc.lists) == (3 if paged else 1)
    assert rv == rc.lists[-1][1]["resourceVersion"]


async def test_bookmarks_advance_the_version_the_next_watch_resumes_from(
    kube_api: ApiClient, namespace: str
) -> None:
    rc = RecordingClient(kube_api)
    sink = Sink()
    # Short watches: the server sends a bookmark shortly before each one's deadline.
    r = Reflector(rc, CONFIGMAPS, sink, namespace=namespace, watch_timeout_range=(5, 5))
    async with anyio.create_task_group() as tg:
        tg.start_soon(r.run)
        await wait_for(lambda: sink.replaced, 30, "the initial list")
        list_rv = r.last_sync_resource_version
        # Writes elsewhere move the global resourceVersion; bookmarks carry it to this watch.
        await rc.create(CONFIGMAPS, {"metadata": {"name": "elsewhere"}}, "default")
        await wait_for(lambda: r.stats.bookmarks >= 1, 30, "a bookmark")
        await wait_for(lambda: len(rc.watch_rvs) >= 2, 30, "the next watch")
        tg.cancel_scope.cancel()
    await rc.delete(CONFIGMAPS, "elsewhere", "default")
    assert rc.watch_rvs[0] == list_rv
    assert int(rc.watch_rvs[1] or 0) > int(list_rv)
    assert sink.events == []
    assert r.stats.lists == 1
