"""The PodSnapshot controller (SPEC §4.2): bind each PodSnapshot to one PodSnapshotContent.

PodSnapshots and contents are read from the cache; the source pod is read live (one GET per
binding: this controller never caches pods). `reconcile` reads in SPEC step order:

1. Deleting: delete the bound content (back link checked, UID precondition) and wait until it is
   gone (its delete event brings us back), then drop the finalizer.
2. Add the finalizer before anything else exists; `Failed=True` is terminal.
3. Not bound: the source pod must exist (`SourcePodNotFound`), be the pinned incarnation
   (`StalePodReference`) and be scheduled (else requeue with backoff: not a failure). Create the
   content `podsnapshotcontent-<uid>` labelled with the node; on AlreadyExists adopt it only if its
   back link is ours (`ContentConflict` otherwise); write `boundSnapshotContentName`.
4. Bound: check the back link again, then mirror the content's Ready / Failed; while it has
   neither, `Ready=False` `Pending`. Status is written only when it changed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.conditions import Condition, find_condition, set_condition
from dynamo_snapshot.api.podsnapshot import PodSnapshot, PodSnapshotStatus
from dynamo_snapshot.api.podsnapshotcontent import PodSnapshotContent, content_name_for
from dynamo_snapshot.api.resources import POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.api.wire import ApiDecodeError
from dynamo_snapshot.controllers.freshness import CATCH_UP, Freshness
from dynamo_snapshot.runtime import (
    PODS,
    AlreadyExists,
    Conflict,
    EventRecorder,
    KubeClient,
    NotFound,
    Obj,
    Request,
    Result,
    add_finalizer,
    meta,
    patch_status_if_changed,
    remove_finalizer,
)

log = logging.getLogger(__name__)

# How often to look again while the content is being deleted (its delete event usually comes
# first) and while the source pod is not scheduled.
REQUEUE_DELETING = 2.0


def content_to_snapshot(content: Obj) -> list[Request]:
    """Map a content (deletion tombstones included) back to its PodSnapshot."""
    ref = ((content.get("spec") or {}).get("snapshotRef")) or {}
    if ref.get("namespace") and ref.get("name"):
        return [Request(str(ref["namespace"]), str(ref["name"]))]
    return []


def back_link_matches(content: PodSnapshotContent, snap: PodSnapshot) -> bool:
    ref = content.spec.snapshot_ref
    return (ref.namespace, ref.name, ref.uid) == (
        snap.metadata.namespace,
        snap.metadata.name,
        snap.metadata.uid,
    )


def mirror(status: PodSnapshotStatus, content: PodSnapshotContent) -> PodSnapshotStatus:
    """The PodSnapshot's Ready / Failed as the content says (SPEC §4.2 step 4)."""
    conds: tuple[Condition, ...] = status.conditions
    failed = find_condition(content.status.conditions, c.CONDITION_FAILED)
    ready = find_condition(content.status.conditions, c.CONDITION_READY)
    if failed is not None and failed.status == "True":
        conds = set_condition(conds, c.CONDITION_FAILED, "True", failed.reason, failed.message)
        conds = set_condition(conds, c.CONDITION_READY, "False", failed.reason, failed.message)
    elif ready is not None and ready.status == "True":
        conds = set_condition(conds, c.CONDITION_READY, "True", ready.reason, ready.message)
    else:
        conds = set_condition(
            conds, c.CONDITION_READY, "False", c.REASON_PENDING, c.MESSAGE_WAITING_FOR_AGENT
        )
    return attrs.evolve(status, conditions=conds)


def failed_status(status: PodSnapshotStatus, reason: str, message: str) -> PodSnapshotStatus:
    conds = set_condition(status.conditions, c.CONDITION_FAILED, "True", reason, message)
    conds = set_condition(conds, c.CONDITION_READY, "False", reason, message)
    return attrs.evolve(status, conditions=conds)


@attrs.define
class PodSnapshotReconciler:
    client: KubeClient
    recorder: EventRecorder
    fresh: Freshness = attrs.field(factory=Freshness)

    async def reconcile(self, req: Request) -> Result | None:
        try:
            raw = await self.client.get(POD_SNAPSHOTS, req.name, req.namespace)
        except NotFound:
            self.fresh.forget(req.key)
            return None
        if self.fresh.stale(req.key, raw):
            return Result(requeue_after=CATCH_UP)  # our last write is not in the cache yet
        try:
            snap = PodSnapshot.from_dict(raw)
        except ApiDecodeError as err:
            log.error("cannot read PodSnapshot %s: %s", req, err, extra={"key": req.key})
            return None
        return await _Pass(self, raw, snap, req).run()


class _Pass:
    def __init__(
        self, r: PodSnapshotReconciler, raw: dict[str, Any], snap: PodSnapshot, req: Request
    ) -> None:
        self.r = r
        self.client = r.client
        self.raw = raw
        self.snap = snap
        self.key = req.key

    def event(self, type_: str, reason: str, message: str) -> None:
        self.r.recorder.event(self.raw, type_, reason, message, resource=POD_SNAPSHOTS)
        log.info("%s: %s: %s", self.key, reason, message, extra={"key": self.key})

    async def write(self, status: PodSnapshotStatus) -> None:
        if status != self.snap.status:
            self.raw = await patch_status_if_changed(
                self.client, POD_SNAPSHOTS, self.raw, status.to_dict()
            )
            self.r.fresh.wrote(self.key, self.raw)
            self.snap = attrs.evolve(self.snap, status=status)

    async def fail(self, reason: str, message: str) -> None:
        await self.write(failed_status(self.snap.status, reason, message))
        self.event("Warning", reason, message)

    @property
    def content_name(self) -> str:
        return self.snap.status.bound_snapshot_content_name or content_name_for(
            self.snap.metadata.uid or ""
        )

    async def content(self) -> PodSnapshotContent | None:
        """The content by its name: from the cache, confirmed live when the cache lacks it."""
        name = self.content_name
        try:
            raw = await self.client.get(POD_SNAPSHOT_CONTENTS, name)
        except NotFound:
            try:
                raw = await self.client.reader.get(POD_SNAPSHOT_CONTENTS, name)
            except NotFound:
                return None
        return PodSnapshotContent.from_dict(raw)

    async def run(self) -> Result | None:
        snap = self.snap
        if snap.metadata.deleting:
            return await self.finalize()  # step 1
        if c.FINALIZER_CONTENT_CLEANUP not in snap.metadata.finalizers:
            self.raw = await add_finalizer(
                self.client, POD_SNAPSHOTS, self.raw, c.FINALIZER_CONTENT_CLEANUP
            )  # step 2
            self.r.fresh.wrote(self.key, self.raw)
        if snap.failed:
            return None
        if not snap.status.bound_snapshot_content_name:
            return await self.bind()  # step 3
        return await self.mirror()  # step 4

    async def finalize(self) -> Result | None:
        if c.FINALIZER_CONTENT_CLEANUP not in self.snap.metadata.finalizers:
            return None
        content = await self.content()
        if content is not None and back_link_matches(content, self.snap):
            if not content.metadata.deleting:
                with contextlib.suppress(NotFound, Conflict):
                    await self.client.delete(
                        POD_SNAPSHOT_CONTENTS,
                        content.metadata.name or "",
                        uid=content.metadata.uid,
                    )
                self.event("Normal", c.REASON_CONTENT_DELETED, f"deleted {content.metadata.name}")
            # Its delete event brings us back; the requeue is the safety net.
            return Result(requeue_after=REQUEUE_DELETING)
        await remove_finalizer(self.client, POD_SNAPSHOTS, self.raw, c.FINALIZER_CONTENT_CLEANUP)
        return None

    async def bind(self) -> Result | None:
        snap = self.snap
        ns = snap.metadata.namespace or ""
        pod_ref = snap.spec.pod_ref
        try:
            pod = await self.client.reader.get(PODS, pod_ref.name, ns)
        except NotFound:
            await self.fail(
                c.REASON_SOURCE_POD_NOT_FOUND,
                f"source pod {ns}/{pod_ref.name} of PodSnapshot {self.key} does not exist",
            )
            return None
        pod_uid = str(meta(pod).get("uid") or "")
        if pod_ref.uid and pod_ref.uid != pod_uid:
            await self.fail(
                c.REASON_STALE_POD_REFERENCE,
                f"pod {ns}/{pod_ref.name} is now uid {pod_uid}, not the uid {pod_ref.uid} this "
                "PodSnapshot names",
            )
            return None
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            # Not a failure: the scheduler has not placed it yet. Back off and look again.
            pending = set_condition(
                snap.status.conditions,
                c.CONDITION_READY,
                "False",
                c.REASON_PENDING,
                f"source pod {ns}/{pod_ref.name} is not scheduled yet",
            )
            if pending != snap.status.conditions:
                self.event(
                    "Normal",
                    c.REASON_SOURCE_POD_NOT_SCHEDULED,
                    f"source pod {ns}/{pod_ref.name} is not scheduled yet; waiting",
                )
            await self.write(attrs.evolve(snap.status, conditions=pending))
            return Result(requeue=True)
        name = content_name_for(snap.metadata.uid or "")
        body = {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_POD_SNAPSHOT_CONTENT,
            "metadata": {"name": name, "labels": {c.LABEL_SNAPSHOT_NODE: node}},
            "spec": {
                "snapshotRef": {
                    "namespace": ns,
                    "name": snap.metadata.name,
                    "uid": snap.metadata.uid,
                },
                "source": {
                    "podRef": {
                        "name": pod_ref.name,
                        "uid": pod_uid,
                        "containers": list(pod_ref.containers),
                    },
                    "nodeName": node,
                },
            },
        }
        try:
            created = await self.client.create(POD_SNAPSHOT_CONTENTS, body)
            content = PodSnapshotContent.from_dict(created)
            verb = "created"
        except AlreadyExists:
            found = await self.content()
            if found is None:
                return Result(requeue=True)  # deleted in between: try again
            if not back_link_matches(found, snap):
                ref = found.spec.snapshot_ref
                await self.fail(
                    c.REASON_CONTENT_CONFLICT,
                    f"PodSnapshotContent {name} exists and belongs to PodSnapshot "
                    f"{ref.namespace}/{ref.name} (uid {ref.uid})",
                )
                return None
            content, verb = found, "adopted"
        status = attrs.evolve(snap.status, bound_snapshot_content_name=name)
        await self.write(mirror(status, content))
        self.event(
            "Normal",
            c.REASON_CONTENT_BOUND,
            f"{verb} and bound {name} for pod {pod_ref.name} on node {node}",
        )
        return None

    async def mirror(self) -> Result | None:
        snap = self.snap
        content = await self.content()
        if content is None:
            if snap.ready:
                return None  # captured; the work order is no longer needed
            # The work order vanished before it was done: issue it again.
            await self.write(attrs.evolve(snap.status, bound_snapshot_content_name=None))
            return await self.bind()
        if not back_link_matches(content, snap):
            ref = content.spec.snapshot_ref
            await self.fail(
                c.REASON_CONTENT_CONFLICT,
                f"bound PodSnapshotContent {content.metadata.name} points back to "
                f"{ref.namespace}/{ref.name} (uid {ref.uid}), not to this PodSnapshot",
            )
            return None
        before = snap.status
        after = mirror(before, content)
        if after != before:
            await self.write(after)
            if content.ready and not snap.ready:
                self.event("Normal", c.REASON_CAPTURED, f"{content.metadata.name} is Ready")
            if content.failed:
                reason = find_condition(after.conditions, c.CONDITION_FAILED)
                self.event(
                    "Warning",
                    reason.reason if reason else c.REASON_CHECKPOINT_FAILED,
                    f"{content.metadata.name} failed: {reason.message if reason else ''}",
                )
        return None
