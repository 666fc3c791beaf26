"""The reading contract on the real API server: the cache, the live reader and the manager's
client answer alike; a filtered view never answers for objects it cannot hold (defect 3); an
index function that raises skips one object instead of stopping the sync (defect 2)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    Manager,
    NoInformer,
    NotFound,
    View,
)
from tests.integration.runtime.test_controller_live import make_manager, running
from tests.support import wait_for


def pod(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        # No scheduler serves this name: the Pod stays Pending and nothing runs.
        "spec": {
            "schedulerName": "nobody",
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "example.invalid/none"}],
        },
    }


async def default_service_account(mgr: Manager, namespace: str) -> None:
    """Pods are admitted only once the namespace's default ServiceAccount exists."""

    async def exists() -> bool:
        try:
            await mgr.api_reader.get(SERVICEACCOUNTS, "default", namespace)
        except NotFound:
            return False
        return True

    await wait_for(exists, 30, "the default ServiceAccount")


def names(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


async def test_a_filtered_view_never_hides_an_object_from_a_get(
    kube_api: ApiClient, namespace: str
) -> None:
    """Defect 3: an all-namespaces Pod informer and a label-filtered one for the namespace."""
    mgr = make_manager(kube_api, None)
    mgr.cache.informer_for(PODS)
    mgr.cache.informer_for(PODS, namespace, label_selector="app=x")
    await default_service_account(mgr, namespace)
    async with running(mgr):
        await mgr.client.create(PODS, pod("plain", namespace))
        await mgr.client.create(PODS, pod("labelled", namespace, app="x"))

        view = View(namespace, labels="app=x")

        async def both_cached() -> bool:
            complete = names(await mgr.cache.list(PODS, namespace))
            filtered = names(await mgr.cache.list(PODS, namespace, view=view))
            return complete == ["labelled", "plain"] and filtered == ["labelled"]

        await wait_for(both_cached, 30, "both views to see their Pods")
        got = await mgr.client.get(PODS, "plain", namespace)
        assert got["metadata"]["name"] == "plain"
        assert got["kind"] == "Pod"
        # The filtered view answers only when named, and then only for what it holds.
        with pytest.raises(NotFound):
            await mgr.client.get(PODS, "plain", namespace, view=view)
        assert names(await mgr.client.list(PODS, namespace, view=view)) == ["labelled"]
        assert names(await mgr.client.list(PODS, namespace, labels="app=x")) == ["labelled"]
        with pytest.raises(ValueError, match="namespace"):
            await mgr.client.get(PODS, "plain")


async def test_cache_live_reader_and_client_read_alike(kube_api: ApiClient, namespace: str) -> None:
    mgr = make_manager(kube_api, namespace)

    def by_colour(obj: Any) -> list[str]:
        colour = (obj.get("data") or {}).get("colour")
        return [colour] if colour else []

    mgr.add_index(CONFIGMAPS, "colour", by_colour)
    mgr.cache.informer_for(CONFIGMAPS, namespace)
    async with running(mgr):
        for name, colour, team in [("a", "red", "x"), ("b", "red", "y"), ("c", "blue", "x")]:
            cm = {"metadata": {"name": name, "labels": {"team": team}}, "data": {"colour": colour}}
            await mgr.client.create(CONFIGMAPS, cm, namespace)

        async def cached() -> bool:
            return len(await mgr.cache.list(CONFIGMAPS, namespace, labels="team")) == 3

        await wait_for(cached, 30, "the cache to see the ConfigMaps")
        queries: list[dict[str, Any]] = [
            {},
            {"labels": "team=x"},
            {"fields": "metadata.name=b"},
            {"index": ("colour", "red")},
            {"index": ("colour", "red"), "labels": "team=x"},
        ]
        for query in queries:
            cache = names(await mgr.cache.list(CONFIGMAPS, namespace, **query))
            live = names(await mgr.api_reader.list(CONFIGMAPS, namespace, **query))
            client = names(await mgr.client.list(CONFIGMAPS, namespace, **query))
            assert cache == live == client, query
        assert names(await mgr.client.list(CONFIGMAPS, namespace, index=("colour", "red"))) == [
            "a",
            "b",
        ]
        for reader in (mgr.cache, mgr.api_reader, mgr.client):
            with pytest.raises(NotFound):
                await reader.get(CONFIGMAPS, "missing", namespace)
            assert (await reader.get(CONFIGMAPS, "a", namespace))["data"]["colour"] == "red"
        # Nothing caches Secrets: the client reads them from the server, the cache refuses.
        secret = {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
        await mgr.client.create(SECRETS, secret, namespace)
        assert (await mgr.client.get(SECRETS, "s", namespace))["metadata"]["name"] == "s"
        with pytest.raises(NoInformer):
            await mgr.cache.get(SECRETS, "s", namespace)
        # A read that names a view never falls back to the server.
        with pytest.raises(NoInformer):
            await mgr.client.get(SECRETS, "s", namespace, view=View(namespace))


async def test_an_index_function_that_raises_skips_the_object_and_sync_goes_on(
    kube_api: ApiClient, namespace: str
) -> None:
    """Defect 2: before, the exception failed every relist and the informer never synced."""
    mgr = make_manager(kube_api, namespace)
    for name, v in [("good", "1"), ("bad", "boom"), ("also-good", "2")]:
        await mgr.live.create(CONFIGMAPS, {"metadata": {"name": name}, "data": {"v": v}}, namespace)

    def by_number(obj: Any) -> list[str]:
        return [str(int((obj.get("data") or {}).get("v", "0")))]  # int("boom") raises

    mgr.add_index(CONFIGMAPS, "number", by_number)
    informer = mgr.cache.informer_for(CONFIGMAPS, namespace)
    skipped = ("informer_skipped_objects_total", {"resource": "configmaps"})
    async with running(mgr):  # waits for the sync, which used to never come
        assert names(await mgr.cache.list(CONFIGMAPS, namespace, labels="!x")) == [
            "also-good",
            "good",
            "kube-root-ca.crt",
        ]
        assert names(await mgr.cache.list(CONFIGMAPS, namespace, index=("number", "2"))) == [
            "also-good"
        ]
        assert mgr.metrics.registry.get_sample_value(*skipped) == 1
        # The watch goes on too: a bad update is skipped, a good change after it arrives.
        await mgr.live.patch_merge(CONFIGMAPS, "good", {"data": {"v": "nope"}}, namespace)
        await mgr.live.create(
            CONFIGMAPS, {"metadata": {"name": "late"}, "data": {"v": "7"}}, namespace
        )

        async def late_cached() -> bool:
            return names(await mgr.cache.list(CONFIGMAPS, namespace, index=("number", "7"))) == [
                "late"
            ]

        await wait_for(late_cached, 30, "the change after the bad one")
    assert mgr.metrics.registry.get_sample_value(*skipped) == 2
    assert informer.reflector.stats.lists == 1, "a bad object must not cause relists"
    assert informer.skipped == 2
