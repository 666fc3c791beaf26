"""Informers against a real kube-apiserver: handlers hear every change; after a forced 410 Gone
the informer relists and its store equals a fresh list, with tombstones for deletes it missed;
after an apiserver restart it reconnects with backoff and delivers what changed.

:class:`Relay` is a real TCP relay between the informer and the API server (not a fake): cutting
it takes the API server away from the informer alone, so the test can change objects, compact
etcd and restart the apiserver while the informer is not looking.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.backoff import Backoff
from dynamo_snapshot.runtime.cache import CacheSyncTimeout, InformerCache
from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.informer import DeletedFinalStateUnknown, SharedInformer, object_of
from dynamo_snapshot.runtime.resource import CONFIGMAPS, NAMESPACES
from dynamo_snapshot.runtime.store import Obj
from tests.support import Impersonate, controller_manager_recovered, restart_apiserver, wait_for


class Mirror:
    """An event handler that rebuilds the world from notifications alone and logs them. If the
    informer missed or invented anything, the mirror differs from a fresh list."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}  # name -> resourceVersion
        self.log: list[tuple[str, str]] = []
        # Recorded, not asserted: the informer catches what a handler raises.
        self.errors: list[str] = []

    def on_add(self, obj: Obj) -> None:
        self.state[obj["metadata"]["name"]] = obj["metadata"]["resourceVersion"]
        self.log.append(("add", obj["metadata"]["name"]))

    def on_update(self, old: Obj, new: Obj) -> None:
        if old["metadata"]["name"] != new["metadata"]["name"]:
            self.errors.append(
                f"update from {old['metadata']['name']} to {new['metadata']['name']}"
            )
        self.state[new["metadata"]["name"]] = new["metadata"]["resourceVersion"]
        self.log.append(("update", new["metadata"]["name"]))

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        name = object_of(obj)["metadata"]["name"]
        self.state.pop(name, None)
        kind = "tombstone" if isinstance(obj, DeletedFinalStateUnknown) else "delete"
        self.log.append((kind, name))


class RecordingBackoff(Backoff):
    """The real Backoff, remembering each delay it handed out."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        delay = super().next_delay()
        self.delays.append(delay)
        return delay


class Relay:
    """A TCP relay to the API server that the test can cut (every connection closed, new ones
    refused) and restore."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cut = False
        self._scopes: set[anyio.CancelScope] = set()
        self._stalled: set[anyio.CancelScope] = set()
        self._pumps: dict[anyio.CancelScope, anyio.CancelScope] = {}
        self.throttle = 0  # bytes per second towards the client; 0: as fast as possible

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started()
        await listener.serve(self._handle)

    async def _handle(self, downstream: anyio.abc.SocketStream) -> None:
        async with downstream:
            if self.cut:
                return
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            except OSError:
                return
            async with upstream:
                with anyio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        with anyio.CancelScope() as pumps:
                            self._pumps[scope] = pumps
                            async with anyio.create_task_group() as tg:
                                tg.start_soon(self._pump, downstream, upstream, tg.cancel_scope)
                                tg.start_soon(
                                    self._pump, upstream, downstream, tg.cancel_scope, True
                                )
                        if scope in self._stalled:
                            # Stalled: keep both sockets open and silent until cut or the end.
                            await anyio.sleep_forever()
                    finally:
                        self._scopes.discard(scope)
                        self._pumps.pop(scope, None)

    async def _pump(
        self,
        src: anyio.abc.SocketStream,
        dst: anyio.abc.SocketStream,
        scope: anyio.CancelScope,
        downstream: bool = False,
    ) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            async for chunk in src:
                if downstream and self.throttle:
                    # A slow link: the answer keeps flowing, at `throttle` bytes per second.
                    step = max(1, self.throttle // 20)
                    for i in range(0, len(chunk), step):
                        await dst.send(chunk[i : i + step])
                        await anyio.sleep(0.05)
                else:
                    await dst.send(chunk)
        scope.cancel()

    def disconnect(self) -> None:
        self.cut = True
        for scope in list(self._scopes):
            scope.cancel()

    def reconnect(self) -> None:
        self.cut = False

    def stall(self) -> None:
        """Every open connection stops carrying bytes, silently: no FIN, no RST (a peer or NAT
        that vanished). New connections work."""
        for scope in list(self._scopes):
            self._stalled.add(scope)
            self._pumps[scope].cancel()


@pytest.fixture
def admin(kube_api: ApiClient) -> Client:
    return Client(kube_api)


@contextlib.asynccontextmanager
async def api_client_for(kubeconfig: Any, host: str | None = None) -> AsyncIterator[ApiClient]:
    cfg = k8s.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
    )
    if host:
        cfg.host = host
    api = ApiClient(configuration=cfg)
    try:
        yield api
    finally:
        await api.close()


SEL = "test=informer"


def cm(name: str, **data: str) -> dict[str, Any]:
    """A ConfigMap labelled for these tests (every namespace also holds kube-root-ca.crt)."""
    meta = {"name": name, "labels": {"test": "informer"}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


async def live_state(admin: Client, namespace: str) -> dict[str, str]:
    items = (await admin.list(CONFIGMAPS, namespace, label_selector=SEL))["items"]
    return {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}


def store_state(inf: SharedInformer) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in inf.store.list()}


async def converged(admin: Client, namespace: str, inf: SharedInformer, mirror: Mirror) -> bool:
    live = await live_state(admin, namespace)
    assert mirror.errors == []
    return live == store_state(inf) == mirror.state


async def test_handlers_hear_every_change_in_order(admin: Client, namespace: str) -> None:
    await admin.create(CONFIGMAPS, cm("pre", v="0"), namespace)
    inf = SharedInformer(admin, CONFIGMAPS, namespace=namespace, label_selector=SEL)
    mirror = Mirror()
    inf.add_event_handler(mirror)
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        assert await inf.wait_for_sync(30)
        await admin.create(CONFIGMAPS, cm("a", v="1"), namespace)
        await admin.patch_merge(CONFIGMAPS, "a", {"data": {"v": "2"}}, namespace)
        await admin.delete(CONFIGMAPS, "pre", namespace)
        await wait_for(lambda: converged(admin, namespace, inf, mirror), 30, "the informer")
        tg.cancel_scope.cancel()
    assert mirror.log == [("add", "pre"), ("add", "a"), ("update", "a"), ("delete", "pre")]
    cached = inf.store.get(f"{namespace}/a")
    assert cached is not None
    assert cached["data"] == {"v": "2"}
    assert cached["kind"] == "ConfigMap"
    assert "managedFields" not in cached["metadata"]
    assert inf.reflector.stats.lists == 1


async def test_forced_410_relists_and_the_store_equals_a_fresh_list(
    admin: Client, namespace: str, kube_cluster: Any
) -> None:
    for name in ("keep", "change", "gone"):
        await admin.create(CONFIGMAPS, cm(name, v="0"), namespace)
    upstream_port = int(kube_cluster.server.rsplit(":", 1)[1])
    relay = Relay(upstream_port)
    mirror = Mirror()
    async with anyio.create_task_group() as tg:
        await tg.start(relay.serve)
        async with api_client_for(
            kube_cluster.kubeconfig, f"https://127.0.0.1:{relay.port}"
        ) as api:
            inf = SharedInformer(
                Client(api),
                CONFIGMAPS,
                namespace=namespace,
                label_selector=SEL,
                backoff=Backoff(0.2, 2.0),
            )
            inf.add_event_handler(mirror)
            tg.start_soon(inf.run)
            assert await inf.wait_for_sync(30)
            stats = inf.reflector.stats
            # A list at "0" comes from the watch cache, which may lag the objects just made:
            # start from an informer that knows all three.
            await wait_for(lambda: converged(admin, namespace, inf, mirror), 30, "the start")
            assert len(mirror.log) == 3

            relay.disconnect()
            await wait_for(lambda: stats.errors >= 1, 30, "the informer to lose its watch")
            # Changes the informer cannot see, then history it cannot resume from.
            await admin.patch_merge(CONFIGMAPS, "change", {"data": {"v": "1"}}, namespace)
            await admin.delete(CONFIGMAPS, "gone", namespace)
            await admin.create(CONFIGMAPS, cm("new"), namespace)
            await admin.create(CONFIGMAPS, cm("ephemeral"), namespace)
            await admin.delete(CONFIGMAPS, "ephemeral", namespace)
            await anyio.to_thread.run_sync(kube_cluster.compact_etcd)
            await restart_apiserver(kube_cluster, admin)
            relay.reconnect()

            await wait_for(lambda: stats.gone >= 1, 90, "a 410 Gone on the resumed watch")
            await wait_for(lambda: converged(admin, namespace, inf, mirror), 60, "the relist")
            tg.cancel_scope.cancel()

    assert stats.lists >= 2
    assert set(mirror.state) == {"keep", "change", "new"}
    after_sync = mirror.log[3:]
    assert ("tombstone", "gone") in after_sync, mirror.log
    assert ("update", "change") in after_sync
    assert ("add", "new") in after_sync
    # Unchanged objects are not re-announced; what came and went unseen is never announced.
    assert ("update", "keep") not in after_sync
    assert all(name != "ephemeral" for _, name in mirror.log)


async def test_apiserver_restart_during_a_watch_reconnects_with_backoff(
    admin: Client, namespace: str, kube_cluster: Any
) -> None:
    await admin.create(CONFIGMAPS, cm("before"), namespace)
    backoff = RecordingBackoff(0.2, 5.0, jitter=0.0)
    mirror = Mirror()
    async with api_client_for(kube_cluster.kubeconfig) as api:
        inf = SharedInformer(
            Client(api), CONFIGMAPS, namespace=namespace, label_selector=SEL, backoff=backoff
        )
        inf.add_event_handler(mirror)
        async with anyio.create_task_group() as tg:
            tg.start_soon(inf.run)
            assert await inf.wait_for_sync(30)
            await anyio.to_thread.run_sync(kube_cluster.stop_apiserver)
            await wait_for(lambda: len(backoff.delays) >= 3, 30, "retries against a dead server")
            await anyio.to_thread.run_sync(kube_cluster.start_apiserver)
            await admin.create(CONFIGMAPS, cm("after"), namespace)
            await admin.patch_merge(CONFIGMAPS, "before", {"data": {"x": "1"}}, namespace)
            await wait_for(lambda: converged(admin, namespace, inf, mirror), 60, "reconnection")
            tg.cancel_scope.cancel()
    await controller_manager_recovered(admin)
    # Retries against the dead server were spaced exponentially (no jitter here), not hammered.
    first = backoff.delays[:3]
    assert first == pytest.approx([0.2, 0.4, 0.8])
    assert set(mirror.state) == {"before", "after"}
    assert ("add", "after") in mirror.log
    assert ("update", "before") in mirror.log


async def test_a_silently_dead_watch_is_noticed_by_its_idle_timeout(
    admin: Client, namespace: str, kube_cluster: Any
) -> None:
    """Defect 5: a watch connection that goes silent (no FIN, no RST) must be given up after the
    idle timeout, not after the server-side timeout plus 30 s (5.5 to 10.5 minutes)."""
    upstream_port = int(kube_cluster.server.rsplit(":", 1)[1])
    relay = Relay(upstream_port)
    mirror = Mirror()
    idle = 3.0
    async with anyio.create_task_group() as tg:
        await tg.start(relay.serve)
        async with api_client_for(
            kube_cluster.kubeconfig, f"https://127.0.0.1:{relay.port}"
        ) as api:
            inf = SharedInformer(
                Client(api),
                CONFIGMAPS,
                namespace=namespace,
                label_selector=SEL,
                backoff=Backoff(0.2, 1.0),
                watch_idle_timeout=idle,
            )
            inf.add_event_handler(mirror)
            tg.start_soon(inf.run)
            assert await inf.wait_for_sync(30)
            stats = inf.reflector.stats
            watches = stats.watches
            relay.stall()
            stalled_at = anyio.current_time()
            await admin.create(CONFIGMAPS, cm("while-stalled"), namespace)
            await wait_for(lambda: "while-stalled" in mirror.state, 30, "the change to arrive")
            took = anyio.current_time() - stalled_at
            tg.cancel_scope.cancel()
    assert stats.watches > watches, "the watch was not restarted"
    assert isinstance(stats.last_error, TimeoutError), stats.last_error
    assert stats.lists == 1, "a dead stream is resumed, not relisted"
    assert idle <= took < idle + 10, took


async def test_a_slow_large_list_is_not_cut_by_the_request_timeout(
    admin: Client, namespace: str, kube_cluster: Any
) -> None:
    """Defect 7: reflector lists shared the client's total request timeout, so a list that takes
    longer (an unpaged list at resourceVersion "0" of a large resource) failed on every relist
    and the informer never synced. A list that keeps flowing must be read to its end."""
    for i in range(12):
        # Random, so that the gzip the apiserver applies cannot shrink it.
        blob = base64.b64encode(os.urandom(75_000)).decode()
        await admin.create(CONFIGMAPS, cm(f"big-{i}", blob=blob), namespace)
    relay = Relay(int(kube_cluster.server.rsplit(":", 1)[1]))
    async with anyio.create_task_group() as tg:
        await tg.start(relay.serve)
        async with api_client_for(
            kube_cluster.kubeconfig, f"https://127.0.0.1:{relay.port}"
        ) as api:
            # The total request timeout is 1 s; the list takes about 3 s through the relay.
            slow = Client(api, request_timeout=1.0)
            inf = SharedInformer(
                slow, CONFIGMAPS, namespace=namespace, label_selector=SEL, backoff=Backoff(0.2, 1)
            )
            relay.throttle = 400_000
            started = anyio.current_time()
            tg.start_soon(inf.run)
            synced = await inf.wait_for_sync(60)
            took = anyio.current_time() - started
            relay.throttle = 0
            tg.cancel_scope.cancel()
    assert synced, f"never synced: {inf.reflector.stats.last_error!r}"
    assert took > 1.0, f"the list was not slow enough to test anything ({took:.1f}s)"
    assert inf.reflector.stats.lists == 1
    assert len(inf.store) == 12


async def test_cache_shares_informers_and_serves_reads(admin: Client, namespace: str) -> None:
    await admin.create(
        CONFIGMAPS, {**cm("x"), "metadata": {"name": "x", "labels": {"app": "a"}}}, namespace
    )
    await admin.create(CONFIGMAPS, cm("y"), namespace)
    cache = InformerCache(admin)
    one = cache.informer_for(CONFIGMAPS, namespace=namespace)
    assert cache.informer_for(CONFIGMAPS, namespace=namespace) is one
    labelled = cache.informer_for(CONFIGMAPS, namespace=namespace, label_selector="app=a")
    by_name = cache.informer_for(CONFIGMAPS, namespace=namespace, field_selector="metadata.name=y")
    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.run)
        await cache.wait_for_sync(30)
        # Added while running: started by the running cache.
        cache.informer_for(NAMESPACES)
        await cache.wait_for_sync(30)
        tg.cancel_scope.cancel()
    # Selectors filter on the server: these informers never even receive the other objects.
    assert store_state(labelled).keys() == {"x"}
    assert store_state(by_name).keys() == {"y"}
    names = sorted(o["metadata"]["name"] for o in await cache.list(CONFIGMAPS, namespace))
    assert names == ["kube-root-ca.crt", "x", "y"]
    app_a = await cache.list(CONFIGMAPS, namespace, labels="app=a")
    assert [o["metadata"]["name"] for o in app_a] == ["x"]
    assert (await cache.get(NAMESPACES, namespace))["metadata"]["name"] == namespace
    got = await cache.get(CONFIGMAPS, "y", namespace)
    assert got["metadata"]["namespace"] == namespace


async def test_sync_timeout_without_rbac_names_the_resource(
    namespace: str, impersonate: Impersonate
) -> None:
    async with impersonate("system:serviceaccount:nobody:nobody") as api:
        cache = InformerCache(Client(api))
        cache.informer_for(CONFIGMAPS, namespace=namespace)
        async with anyio.create_task_group() as tg:
            tg.start_soon(cache.run)
            with pytest.raises(CacheSyncTimeout) as info:
                await cache.wait_for_sync(3)
            tg.cancel_scope.cancel()
    assert f"configmaps in {namespace}" in str(info.value)
    assert "RBAC" in str(info.value)
