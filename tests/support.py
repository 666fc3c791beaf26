"""Small helpers shared by tests: waiting on a condition with a deadline (never on time alone)."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import msgspec
import orjson
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.client import Client, RawList
from dynamo_snapshot.runtime.errors import NotFound
from dynamo_snapshot.runtime.resource import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS, Resource

Impersonate = Callable[..., AbstractAsyncContextManager[ApiClient]]


async def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll an async or sync predicate until it returns a truthy value; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(interval)


def raw_list(items: list[dict[str, Any]], resource_version: str) -> RawList:
    """A list answer as the framework's Client.list_raw returns it: items as undecoded JSON.
    For the FAKE API servers of unit tests."""
    return RawList(
        items=[msgspec.Raw(orjson.dumps(i)) for i in items],
        metadata={"resourceVersion": resource_version},
    )


async def restart_apiserver(kube_cluster: Any, admin: Client) -> None:
    """Restart the apiserver, then wait for the controller-manager to catch up."""
    await anyio.to_thread.run_sync(kube_cluster.restart_apiserver)
    await controller_manager_recovered(admin)


async def controller_manager_recovered(admin: Client) -> None:
    """Wait until a new namespace gets its default ServiceAccount again. After an apiserver
    outage the controller-manager's own reflectors back off for up to 30 s, and the tests that
    come after need it."""
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    await admin.create(NAMESPACES, {"metadata": {"name": probe}})

    async def default_sa() -> bool:
        try:
            await admin.get(SERVICEACCOUNTS, "default", probe)
        except NotFound:
            return False
        return True

    try:
        await wait_for(default_sa, 120, "the controller-manager to recover from the restart")
    finally:
        await admin.delete(NAMESPACES, probe)


EPHEMERAL_LABEL = "dynamo-snapshot.test/ephemeral"


async def create_test_namespace(client: Client) -> str:
    """A fresh namespace labelled ephemeral, returned once the controller-manager has populated
    it: its default ServiceAccount (pods are refused before it) and ``kube-root-ca.crt``, which
    it publishes at its own pace (tests that list a namespace's ConfigMaps would otherwise see
    it or not, depending on the machine's load)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.create(
        NAMESPACES, {"metadata": {"name": name, "labels": {EPHEMERAL_LABEL: "true"}}}
    )
    for resource, obj in ((SERVICEACCOUNTS, "default"), (CONFIGMAPS, "kube-root-ca.crt")):
        await wait_for(
            functools.partial(_exists, client, resource, obj, name),
            120,
            f"{resource.kind} {name}/{obj}",
        )
    return name


async def _exists(client: Client, resource: Resource, name: str, namespace: str) -> bool:
    try:
        await client.get(resource, name, namespace)
    except NotFound:
        return False
    return True
