"""Client against a real kube-apiserver: CRUD, merge patch, optimistic concurrency, delete
preconditions, the status subresource of a custom resource, typed errors, raw watches and the
per-request callback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
)
from dynamo_snapshot.runtime.resource import (
    CONFIGMAPS,
    CUSTOMRESOURCEDEFINITIONS,
    Resource,
)
from tests.support import Impersonate, restart_apiserver, wait_for

WIDGETS = Resource("runtime-test.dynamo.example", "v1", "widgets", "Widget")

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.runtime-test.dynamo.example"},
    "spec": {
        "group": "runtime-test.dynamo.example",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 0}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "ready": {"type": "boolean"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


class Requests:
    """Records what the Client reports through on_request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, code: str, method: str, host: str) -> None:
        self.seen.append((code, method, host))


@pytest.fixture
def requests() -> Requests:
    return Requests()


@pytest.fixture
def kc(kube_api: ApiClient, requests: Requests) -> Client:
    return Client(kube_api, on_request=requests, field_manager="runtime-tests")


@pytest.fixture
async def widgets(kc: Client) -> AsyncIterator[Resource]:
    with contextlib.suppress(AlreadyExists):
        await kc.create(CUSTOMRESOURCEDEFINITIONS, WIDGET_CRD)

    async def established() -> bool:
        crd = await kc.get(CUSTOMRESOURCEDEFINITIONS, WIDGET_CRD["metadata"]["name"])
        conds = (crd.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            return False
        # Established can precede the endpoint serving; probe it.
        try:
            await kc.list(WIDGETS, "default", limit=1)
        except NotFound:
            return False
        return True

    await wait_for(established, 60, "the Widget CRD to be established")
    yield WIDGETS
    # Leave no CRD behind: other tests' namespaces would have to clean up its objects.
    await kc.delete(CUSTOMRESOURCEDEFINITIONS, WIDGET_CRD["metadata"]["name"])


def cm(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "client-test"}},
        "data": dict(data),
    }


async def test_crud_and_merge_patch(kc: Client, namespace: str, requests: Requests) -> None:
    created = await kc.create(CONFIGMAPS, cm("one", a="1"), namespace)
    assert created["metadata"]["namespace"] == namespace
    assert created["metadata"]["uid"]
    await kc.create(CONFIGMAPS, {**cm("two"), "metadata": {"name": "two", "namespace": namespace}})

    got = await kc.get(CONFIGMAPS, "one", namespace)
    assert got["data"] == {"a": "1"}
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    listed = await kc.list(CONFIGMAPS, namespace, label_selector="app=client-test")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
    assert listed["metadata"]["resourceVersion"]
    by_field = await kc.list(CONFIGMAPS, namespace, field_selector="metadata.name=two")
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["two"]

    got["data"]["b"] = "2"
    updated = await kc.update(CONFIGMAPS, got)
    assert updated["data"] == {"a": "1", "b": "2"}
    assert updated["metadata"]["resourceVersion"] != got["metadata"]["resourceVersion"]

    patched = await kc.patch_merge(
        CONFIGMAPS,
        "one",
        {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"x": "y"}}},
        namespace,
    )
    assert patched["data"] == {"b": "2", "c": "3"}
    assert patched["metadata"]["labels"] == {"app": "client-test", "x": "y"}

    await kc.delete(CONFIGMAPS, "one", namespace)
    with pytest.raises(NotFound):
        await kc.get(CONFIGMAPS, "one", namespace)

    host = kc.host
    assert host.startswith("127.0.0.1:")
    assert ("201", "POST", host) in requests.seen
    assert ("200", "PATCH", host) in requests.seen
    assert ("404", "GET", host) in requests.seen


async def test_stale_resource_version_update_is_a_conflict(kc: Client, namespace: str) -> None:
    first = await kc.create(CONFIGMAPS, cm("locked", n="0"), namespace)
    await kc.update(CONFIGMAPS, {**first, "data": {"n": "1"}})
    with pytest.raises(Conflict) as info:
        # Still carries the original resourceVersion: someone else wrote in between.
        await kc.update(CONFIGMAPS, {**first, "data": {"n": "2"}})
    assert info.value.status == 409
    assert "modified" in info.value.message
    # A merge patch that names a stale resourceVersion is locked the same way.
    with pytest.raises(Conflict):
        await kc.patch_merge(
            CONFIGMAPS,
            "locked",
            {
                "metadata": {"resourceVersion": first["metadata"]["resourceVersion"]},
                "data": {"n": "3"},
            },
            namespace,
        )
    assert (await kc.get(CONFIGMAPS, "locked", namespace))["data"] == {"n": "1"}


async def test_delete_preconditions(kc: Client, namespace: str) -> None:
    obj = await kc.create(CONFIGMAPS, cm("guarded"), namespace)
    uid, rv = obj["metadata"]["uid"], obj["metadata"]["resourceVersion"]
    with pytest.raises(Conflict, match="UID"):
        await kc.delete(
            CONFIGMAPS, "guarded", namespace, uid="00000000-0000-0000-0000-000000000000"
        )
    newer = await kc.patch_merge(CONFIGMAPS, "guarded", {"data": {"k": "v"}}, namespace)
    with pytest.raises(Conflict, match="ResourceVersion"):
        await kc.delete(CONFIGMAPS, "guarded", namespace, uid=uid, resource_version=rv)
    assert (await kc.get(CONFIGMAPS, "guarded", namespace))["metadata"]["uid"] == uid
    await kc.delete(
        CONFIGMAPS,
        "guarded",
        namespace,
        uid=uid,
        resource_version=newer["metadata"]["resourceVersion"],
        propagation_policy="Background",
    )
    with pytest.raises(NotFound):
        await kc.get(CONFIGMAPS, "guarded", namespace)


async def test_typed_errors(kc: Client, namespace: str, impersonate: Impersonate) -> None:
    await kc.create(CONFIGMAPS, cm("dup"), namespace)
    with pytest.raises(AlreadyExists) as exists:
        await kc.create(CONFIGMAPS, cm("dup"), namespace)
    assert exists.value.details["name"] == "dup"
    with pytest.raises(NotFound):
        await kc.get(CONFIGMAPS, "nope", namespace)
    with pytest.raises(NotFound):
        await kc.delete(CONFIGMAPS, "nope", namespace)
    with pytest.raises(Invalid) as invalid:
        await kc.create(CONFIGMAPS, cm("Not_A_Valid_Name"), namespace)
    assert invalid.value.status == 422
    assert invalid.value.details.get("causes")
    async with impersonate("system:serviceaccount:nobody:nobody") as api:
        with pytest.raises(Forbidden) as forbidden:
            await Client(api).list(CONFIGMAPS, namespace)
    assert "configmaps" in forbidden.value.message


async def test_status_subresource(kc: Client, namespace: str, widgets: Resource) -> None:
    w = await kc.create(
        widgets,
        {
            "apiVersion": widgets.api_version,
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
        },
        namespace,
    )
    # The main resource ignores status; the status subresource ignores everything else.
    w2 = await kc.update(widgets, {**w, "spec": {"size": 2}, "status": {"phase": "Ignored"}})
    assert w2["spec"] == {"size": 2}
    assert "status" not in w2
    w3 = await kc.update_status(widgets, {**w2, "spec": {"size": 99}, "status": {"phase": "A"}})
    assert w3["status"] == {"phase": "A"}
    assert w3["spec"] == {"size": 2}
    with pytest.raises(Conflict):
        await kc.update_status(widgets, {**w2, "status": {"phase": "stale"}})
    w4 = await kc.patch_status(widgets, "w", {"status": {"ready": True}}, namespace)
    assert w4["status"] == {"phase": "A", "ready": True}
    assert w4["metadata"]["generation"] == w2["metadata"]["generation"]
    with pytest.raises(Invalid):
        await kc.patch_merge(widgets, "w", {"spec": {"size": -1}}, namespace)


async def test_list_pages_with_limit_and_continue(kc: Client, namespace: str) -> None:
    for i in range(5):
        await kc.create(CONFIGMAPS, cm(f"p{i}"), namespace)
    names: list[str] = []
    first = await kc.list(CONFIGMAPS, namespace, label_selector="app=client-test", limit=2)
    token = first["metadata"].get("continue")
    assert token
    names += [i["metadata"]["name"] for i in first["items"]]
    while token:
        page = await kc.list(
            CONFIGMAPS, namespace, limit=2, continue_=token, label_selector="app=client-test"
        )
        names += [i["metadata"]["name"] for i in page["items"]]
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue")
    assert sorted(names) == [f"p{i}" for i in range(5)]


async def test_watch_streams_events_including_large_objects(kc: Client, namespace: str) -> None:
    start = await kc.list(CONFIGMAPS, namespace)
    big = "x" * 900_000  # one watch line far larger than any socket read
    seen: list[tuple[str, str, int]] = []

    async def watch() -> None:
        stream = kc.watch(
            CONFIGMAPS,
            namespace,
            resource_version=start["metadata"]["resourceVersion"],
            timeout_seconds=60,
        )
        async with contextlib.aclosing(stream):
            async for etype, obj in stream:
                if etype == "BOOKMARK":
                    continue
                seen.append((etype, obj["metadata"]["name"], len(obj.get("data", {}).get("b", ""))))
                if etype == "DELETED":
                    return

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await kc.create(CONFIGMAPS, cm("small", a="1"), namespace)
            await kc.create(CONFIGMAPS, {**cm("big"), "data": {"b": big}}, namespace)
            await kc.patch_merge(CONFIGMAPS, "small", {"data": {"a": "2"}}, namespace)
            await kc.delete(CONFIGMAPS, "small", namespace)
    assert seen == [
        ("ADDED", "small", 0),
        ("ADDED", "big", 900_000),
        ("MODIFIED", "small", 0),
        ("DELETED", "small", 0),
    ]


async def test_compacted_versions_are_gone_for_lists_and_watches(
    kc: Client, namespace: str, kube_cluster: Any
) -> None:
    old = await kc.create(CONFIGMAPS, cm("old"), namespace)
    old_rv = old["metadata"]["resourceVersion"]
    await kc.patch_merge(CONFIGMAPS, "old", {"data": {"k": "v"}}, namespace)
    await anyio.to_thread.run_sync(kube_cluster.compact_etcd)
    # A restarted apiserver's watch cache starts after the compaction, so neither it nor etcd
    # still has the old version.
    await restart_apiserver(kube_cluster, kc)

    async def exact_list() -> Any:
        try:
            return await kc.list(
                CONFIGMAPS,
                namespace,
                limit=1,
                resource_version=old_rv,
                resource_version_match="Exact",
            )
        except ApiError as err:
            if err.status == 429:  # the watch cache is still initialising
                return None
            return err

    listed = await wait_for(exact_list, 60, "an answer to the exact list")
    assert isinstance(listed, Gone)
    assert listed.status == 410

    async def drain() -> None:
        stream = kc.watch(CONFIGMAPS, namespace, resource_version=old_rv, timeout_seconds=10)
        async with contextlib.aclosing(stream):
            async for _ in stream:
                pass

    with anyio.fail_after(30), pytest.raises(Gone) as info:
        await drain()
    assert info.value.status == 410
