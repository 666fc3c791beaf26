"""The PodSnapshot controller's own paths (SPEC §4.2) and the orphan collector, on the real
control plane. PodSnapshots are created directly here, as any user may."""

from __future__ import annotations

import uuid
from typing import Any

import attrs
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.resources import POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.controllers.orphans import OrphanCollector
from dynamo_snapshot.runtime import PODS, FakeClock, KubeClient, NotFound, meta
from tests.integration.controllers.support import (
    NODE,
    AgentStandIn,
    Cluster,
    KubeletStandIn,
    condition,
    controllers,
)
from tests.support import wait_for


def snapshot(name: str, pod: str, uid: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": pod, "containers": ["main"]}
    if uid:
        ref["uid"] = uid
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_POD_SNAPSHOT,
        "metadata": {"name": name},
        "spec": {"source": {"podRef": ref}},
    }


def pod_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            # Unschedulable on purpose: the test decides when it is "scheduled".
            "nodeSelector": {"dynamo-snapshot.test/nowhere": "true"},
            "containers": [{"name": "main", "image": "workload:dev"}],
        },
    }


async def wait_condition(
    cluster: Cluster,
    name: str,
    type_: str,
    status: str,
    reason: str,
    message: str | None = None,
) -> dict[str, Any]:
    """Wait until the condition reads so; give `message` when the same status and reason are
    already there from an earlier step, or the wait returns the old state at once."""

    async def check() -> dict[str, Any] | None:
        snap = await cluster.maybe(POD_SNAPSHOTS, name, cluster.ns)
        cond = condition(snap, type_) if snap else None
        if cond is None or (cond["status"], cond["reason"]) != (status, reason):
            return None
        return snap if message is None or cond["message"] == message else None

    found: dict[str, Any] = await wait_for(check, 60, f"{name} {type_}={status} {reason}")
    return found


async def test_missing_source_pod_fails(kube_api: ApiClient, cluster: Cluster) -> None:
    async with controllers(kube_api, cluster.ns):
        await cluster.client.create(POD_SNAPSHOTS, snapshot("nopod", "ghost"), cluster.ns)
        snap = await wait_condition(cluster, "nopod", "Failed", "True", "SourcePodNotFound")
        assert "ghost" in condition(snap, "Failed")["message"]  # type: ignore[index]
        assert c.FINALIZER_CONTENT_CLEANUP in meta(snap)["finalizers"]
        assert (await cluster.wait_event("nopod", "SourcePodNotFound")).count("ghost") == 1


async def test_stale_pod_reference_fails(kube_api: ApiClient, cluster: Cluster) -> None:
    await cluster.client.create(PODS, pod_body("src"), cluster.ns)
    async with controllers(kube_api, cluster.ns):
        await cluster.client.create(
            POD_SNAPSHOTS, snapshot("stale", "src", str(uuid.uuid4())), cluster.ns
        )
        await wait_condition(cluster, "stale", "Failed", "True", "StalePodReference")
        await cluster.wait_event("stale", "StalePodReference")
        assert await cluster.items(POD_SNAPSHOT_CONTENTS) == [] or all(
            i["spec"]["snapshotRef"]["name"] != "stale"
            or i["spec"]["snapshotRef"]["namespace"] != cluster.ns
            for i in await cluster.items(POD_SNAPSHOT_CONTENTS)
        )


async def test_unscheduled_pod_backs_off_then_binds(kube_api: ApiClient, cluster: Cluster) -> None:
    pod = await cluster.client.create(PODS, pod_body("later"), cluster.ns)
    async with controllers(kube_api, cluster.ns):
        await cluster.client.create(
            POD_SNAPSHOTS, snapshot("later", "later", meta(pod)["uid"]), cluster.ns
        )
        snap = await wait_condition(cluster, "later", "Ready", "False", "Pending")
        assert "not scheduled" in condition(snap, "Ready")["message"]  # type: ignore[index]
        assert condition(snap, "Failed") is None  # not a failure
        await cluster.wait_event("later", c.REASON_SOURCE_POD_NOT_SCHEDULED)
        await KubeletStandIn(cluster).run(pod)
        content = await cluster.content_of("later")
        assert content["spec"]["source"]["nodeName"] == NODE
        assert content["spec"]["source"]["podRef"]["uid"] == meta(pod)["uid"]
        # Same status and reason as before binding; only the message tells the new state.
        snap = await wait_condition(
            cluster, "later", "Ready", "False", "Pending", c.MESSAGE_WAITING_FOR_AGENT
        )
        assert condition(snap, "Failed") is None


async def test_content_with_a_foreign_back_link_is_a_conflict(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    pod = await cluster.client.create(PODS, pod_body("src"), cluster.ns)
    await KubeletStandIn(cluster).run(pod)
    # Create the PodSnapshot first (controllers not running) to learn its UID, then squat its
    # content name with a back link to someone else.
    snap = await cluster.client.create(POD_SNAPSHOTS, snapshot("squat", "src"), cluster.ns)
    name = f"podsnapshotcontent-{meta(snap)['uid']}"
    await cluster.client.create(
        POD_SNAPSHOT_CONTENTS,
        {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_POD_SNAPSHOT_CONTENT,
            "metadata": {"name": name, "labels": {c.LABEL_SNAPSHOT_NODE: NODE}},
            "spec": {
                "snapshotRef": {"namespace": cluster.ns, "name": "other", "uid": "x"},
                "source": {"podRef": {"name": "src", "containers": ["main"]}, "nodeName": NODE},
            },
        },
    )
    try:
        async with controllers(kube_api, cluster.ns):
            snap = await wait_condition(cluster, "squat", "Failed", "True", "ContentConflict")
            assert name in condition(snap, "Failed")["message"]  # type: ignore[index]
            assert "boundSnapshotContentName" not in (snap.get("status") or {})
            await cluster.wait_event("squat", "ContentConflict")
    finally:
        await cluster.client.delete(POD_SNAPSHOT_CONTENTS, name)


async def test_existing_content_with_our_back_link_is_adopted(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    pod = await cluster.client.create(PODS, pod_body("src"), cluster.ns)
    await KubeletStandIn(cluster).run(pod)
    snap = await cluster.client.create(POD_SNAPSHOTS, snapshot("adopt", "src"), cluster.ns)
    name = f"podsnapshotcontent-{meta(snap)['uid']}"
    content = await cluster.client.create(
        POD_SNAPSHOT_CONTENTS,
        {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_POD_SNAPSHOT_CONTENT,
            "metadata": {"name": name, "labels": {c.LABEL_SNAPSHOT_NODE: NODE}},
            "spec": {
                "snapshotRef": {"namespace": cluster.ns, "name": "adopt", "uid": meta(snap)["uid"]},
                "source": {"podRef": {"name": "src", "containers": ["main"]}, "nodeName": NODE},
            },
        },
    )
    async with controllers(kube_api, cluster.ns):
        await wait_condition(cluster, "adopt", "Ready", "False", "Pending")
        message = await cluster.wait_event("adopt", c.REASON_CONTENT_BOUND)
        assert message.startswith("adopted")
        await AgentStandIn(cluster).ready(content)
        snap = await wait_condition(cluster, "adopt", "Ready", "True", "Captured")
        assert snap["status"]["boundSnapshotContentName"] == name
        assert (
            meta(await cluster.client.get(POD_SNAPSHOT_CONTENTS, name))["uid"]
            == meta(content)["uid"]
        )
        # Deleting the PodSnapshot deletes the content through the finalizer.
        await cluster.client.delete(POD_SNAPSHOTS, "adopt", cluster.ns)
        await cluster.wait_gone(POD_SNAPSHOT_CONTENTS, name)
        await cluster.wait_gone(POD_SNAPSHOTS, "adopt", cluster.ns)


async def cached(client: KubeClient, name: str) -> bool:
    try:
        await client.get(POD_SNAPSHOT_CONTENTS, name)
    except NotFound:
        return False
    return True


def _orphan(name: str, ns: str, snap_name: str, snap_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_POD_SNAPSHOT_CONTENT,
        "metadata": {"name": name, "labels": {c.LABEL_SNAPSHOT_NODE: NODE}},
        "spec": {
            "snapshotRef": {"namespace": ns, "name": snap_name, "uid": snap_uid},
            "source": {"podRef": {"name": "src", "containers": ["main"]}, "nodeName": NODE},
        },
    }


async def test_orphan_collector_waits_the_grace_period(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    orphan = f"podsnapshotcontent-{uuid.uuid4()}"
    await cluster.client.create(
        POD_SNAPSHOT_CONTENTS, _orphan(orphan, cluster.ns, "gone", str(uuid.uuid4()))
    )
    async with controllers(kube_api, cluster.ns) as running:
        clock = FakeClock()
        mgr = running.podsnapshot
        collector = OrphanCollector(
            mgr.client, mgr.event_recorder("t"), grace_period=300, clock=clock
        )
        await wait_for(lambda: cached(mgr.client, orphan), 30, "the orphan in the cache")
        # Contents are cluster-scoped: other tests of the session leave orphans of their own, so
        # only ours is asserted on.
        assert orphan not in await collector.collect_once()  # first seen: the grace starts
        clock.advance(299)
        assert orphan not in await collector.collect_once()
        assert await cluster.maybe(POD_SNAPSHOT_CONTENTS, orphan) is not None
        clock.advance(2)
        assert orphan in await collector.collect_once()
        await cluster.wait_gone(POD_SNAPSHOT_CONTENTS, orphan)


@attrs.define
class CacheMissingPodSnapshots:
    """A STAND-IN for a cache that has not seen the PodSnapshots yet (a real cache misses them
    only for milliseconds, too briefly to test): cache reads of PodSnapshots raise NotFound;
    everything else is the real client's."""

    real: KubeClient

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def get(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        if resource == POD_SNAPSHOTS:
            raise NotFound(404, "NotFound", f"{name} (stand-in cache miss)")
        return await self.real.get(resource, name, namespace)


async def test_orphan_collector_never_deletes_on_a_cache_miss_alone(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    pod = await cluster.client.create(PODS, pod_body("src"), cluster.ns)
    await KubeletStandIn(cluster).run(pod)
    async with controllers(kube_api, cluster.ns) as running:
        await cluster.client.create(POD_SNAPSHOTS, snapshot("kept", "src"), cluster.ns)
        content = await cluster.content_of("kept")
        mgr = running.podsnapshot
        await wait_for(lambda: cached(mgr.client, meta(content)["name"]), 30, "the cache")
        clock = FakeClock()
        collector = OrphanCollector(
            CacheMissingPodSnapshots(mgr.client),  # type: ignore[arg-type]
            mgr.event_recorder("t"),
            grace_period=10,
            clock=clock,
        )
        name = meta(content)["name"]
        # Contents are cluster-scoped: earlier tests of the session may leave real orphans
        # (their PodSnapshots really gone), which this collector rightly deletes. Only ours is
        # asserted on.
        assert name not in await collector.collect_once()
        clock.advance(11)
        # The cache says the PodSnapshot is gone; the live read says it is not: not deleted.
        assert name not in await collector.collect_once()
        assert await cluster.maybe(POD_SNAPSHOT_CONTENTS, name) is not None
