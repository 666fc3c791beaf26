"""A manager restricted to namespaces {a, b} on the real API server, running as an identity that
has Roles in a and b only: its cache syncs (one list and watch per namespace, never a cluster-wide
one, which RBAC would refuse), its controller hears about objects of a and b, before and after
the start, and never about c; reads of c fail loudly. The same identity without the restriction
cannot even sync, which proves the grants are namespaced."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    SECRETS,
    CacheSyncTimeout,
    ControllerBuilder,
    NamespaceNotCached,
    Request,
    RestClient,
)
from tests.integration.rbac_support import Grants, extra_namespaces, rule
from tests.integration.runtime.test_controller_live import configmap, make_manager, running
from tests.support import Impersonate, wait_for

READ_CONFIGMAPS = rule("", "configmaps", "get", "list", "watch")
LIST_SECRETS = rule("", "secrets", "list")
MINE = {"before", "after", "secret"}


def ours(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(namespace, name) of this test's ConfigMaps (every namespace also has kube-root-ca.crt)."""
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objs
        if o["metadata"]["name"] in MINE
    }


async def test_a_manager_of_two_namespaces_needs_only_their_roles_and_sees_only_them(
    kube_api: ApiClient, impersonate: Impersonate, namespace: str
) -> None:
    admin = RestClient(kube_api)
    async with extra_namespaces(kube_api, 2) as (b, c):
        a = namespace
        grants = Grants(kube_api, a, "watcher")
        await grants.in_namespaces([a, b], rules=[READ_CONFIGMAPS, LIST_SECRETS])
        for ns in (a, b, c):
            await admin.create(CONFIGMAPS, configmap("before", ns), ns)
            await admin.create(SECRETS, {"metadata": {"name": "secret"}}, ns)

        async with impersonate(grants.user) as api:
            # Without --namespace the cache lists cluster-wide: this identity may not.
            everywhere = make_manager(api, None, cache_sync_timeout=3.0)
            ControllerBuilder(everywhere).for_(CONFIGMAPS).complete(
                lambda req: anyio.lowlevel.checkpoint()
            )
            with pytest.raises(CacheSyncTimeout, match="configmaps"):
                await everywhere.run()

            seen: set[tuple[str, str]] = set()

            async def record(req: Request) -> None:
                seen.add((req.namespace, req.name))

            mgr = make_manager(api, None, namespaces=(a, b), cache_sync_timeout=20.0)
            ControllerBuilder(mgr).for_(CONFIGMAPS).complete(record)
            informer = mgr.cache.informer_for(CONFIGMAPS)
            assert sorted(r.namespace or "" for r in informer.reflectors) == sorted([a, b])
            async with running(mgr):
                await wait_for(
                    lambda: {(a, "before"), (b, "before")} <= seen, 30, "a and b reconciled"
                )
                # The watches run too: changes after the start arrive, from both namespaces.
                for ns in (b, c):
                    await admin.create(CONFIGMAPS, configmap("after", ns), ns)
                await admin.delete(CONFIGMAPS, "before", a)
                await wait_for(lambda: (b, "after") in seen, 30, "the new ConfigMap in b")

                expected = {(b, "before"), (b, "after")}

                async def cache_caught_up() -> bool:
                    return ours(await mgr.client.list(CONFIGMAPS)) == expected

                await wait_for(cache_caught_up, 30, "the cache to hold a and b's objects")
                assert ours(await mgr.client.list(CONFIGMAPS, b)) == expected
                assert (await mgr.client.get(CONFIGMAPS, "after", b))["metadata"]["namespace"] == b
                # c is not watched: reading it is an error, not an empty answer.
                with pytest.raises(NamespaceNotCached, match=f"namespace {c}"):
                    await mgr.client.get(CONFIGMAPS, "before", c)
                with pytest.raises(NamespaceNotCached, match=f"namespace {c}"):
                    await mgr.client.list(CONFIGMAPS, c)
                assert mgr.cache.has_synced()
                # An uncached kind read "in every namespace" is read live in each of the
                # manager's, not cluster-wide (which this identity may not).
                assert ours(await mgr.client.list(SECRETS)) == {(a, "secret"), (b, "secret")}
        # Never a request for c, before or after the start.
        assert {ns for ns, name in seen if name in MINE} == {a, b}
