"""The checkpoint controller (SPEC §4.1): DynamoCheckpoint → checkpoint Job → PodSnapshot → Ready.

Reads come from the manager's cache (DynamoCheckpoints, the Jobs and PodSnapshots they own, and
only the *checkpoint-source* pods, selected by label: never every pod of the cluster); writes go
to the API server. A read that decides a failure ("the Job is gone") is confirmed live first: the
cache may simply not have seen a create yet.

`reconcile` reads in SPEC step order:

1. resolve the checkpoint ID, stamp it as a label and in status, refuse a duplicate;
5. (checked first, as it resets the rest) a new artifact version on a terminal checkpoint
   starts over at Pending, deleting the previous PodSnapshot;
   a terminal checkpoint otherwise only cleans up its Job;
2. Pending: shape and create the Job (adopt ours on AlreadyExists), → Creating, `JobCreated`;
3. Creating: find the Job's pod through the Job's label and controller reference, create the
   PodSnapshot `<checkpoint name>` (adopt ours, fail on a foreign one), record its name;
4. Ready when the PodSnapshot is Ready and the Job Complete; Failed when the PodSnapshot or the Job
   fails or the Job disappears; after a terminal phase the Job is deleted (UID precondition).

Every transition writes status once (only when it changed) and records an Event.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final

import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.checkpoint_id import resolve_checkpoint_id
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpoint, DynamoCheckpointStatus
from dynamo_snapshot.api.podsnapshot import PodSnapshot
from dynamo_snapshot.api.resources import DYNAMO_CHECKPOINTS, POD_SNAPSHOTS
from dynamo_snapshot.api.wire import ApiDecodeError, now
from dynamo_snapshot.controllers import checkpoint_state as st
from dynamo_snapshot.controllers.freshness import CATCH_UP, Freshness
from dynamo_snapshot.controllers.jobshape import JobShapeError, build_job, job_name
from dynamo_snapshot.runtime import (
    JOBS,
    PODS,
    AlreadyExists,
    Conflict,
    EventRecorder,
    KubeClient,
    NotFound,
    Obj,
    Request,
    Result,
    View,
    meta,
    patch_status_if_changed,
    set_controller_reference,
)

log = logging.getLogger(__name__)

# The only pods this controller ever caches (SPEC §4.1).
SOURCE_POD_SELECTOR: Final = f"{c.LABEL_IS_CHECKPOINT_SOURCE}={c.LABEL_TRUE}"
# Checkpoint Jobs carry the owner label: the Job informer caches only those.
OWNED_JOB_SELECTOR: Final = c.LABEL_SNAPSHOT_OWNER
INDEX_CONTROLLER_UID: Final = "controller-uid"
INDEX_CHECKPOINT_ID: Final = "checkpoint-id"
# While a previous PodSnapshot of the same name is still being deleted (its content first).
REQUEUE_WHILE_DELETING: Final = 1.0


def controller_uid_index(obj: Obj) -> list[str]:
    """Index: the UID of an object's controlling owner."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return [str(ref.get("uid"))]
    return []


def checkpoint_id_index(obj: Obj) -> list[str]:
    """Index: the checkpoint ID a DynamoCheckpoint claims (status first, then its label)."""
    status_id = (obj.get("status") or {}).get("checkpointID")
    if status_id:
        return [str(status_id)]
    label = (meta(obj).get("labels") or {}).get(c.LABEL_CHECKPOINT_ID)
    return [str(label)] if label else []


def source_pod_owner(pod: Obj) -> list[Request]:
    """Map a checkpoint-source pod to its DynamoCheckpoint (the owner label)."""
    m = meta(pod)
    owner = (m.get("labels") or {}).get(c.LABEL_SNAPSHOT_OWNER)
    return [Request(str(m.get("namespace") or ""), str(owner))] if owner else []


def _controlled_by(obj: Obj, uid: str | None) -> bool:
    return bool(uid) and controller_uid_index(obj) == [uid]


@attrs.define
class CheckpointReconciler:
    """See the module docstring. `view_namespace` is the namespace the manager watches (None:
    all), which names the informer of checkpoint-source pods."""

    client: KubeClient
    recorder: EventRecorder
    view_namespace: str | None = None
    seccomp_profile: str | None = c.SECCOMP_LOCALHOST_PROFILE
    fresh: Freshness = attrs.field(factory=Freshness)

    @property
    def _pod_view(self) -> View:
        return View(self.view_namespace, SOURCE_POD_SELECTOR)

    @property
    def _job_view(self) -> View:
        return View(self.view_namespace, OWNED_JOB_SELECTOR)

    # -- the reconcile ----------------------------------------------------------------------

    async def reconcile(self, req: Request) -> Result | None:
        try:
            raw = await self.client.get(DYNAMO_CHECKPOINTS, req.name, req.namespace)
        except NotFound:
            self.fresh.forget(req.key)
            return None  # deleted: garbage collection removes what it owned
        if self.fresh.stale(req.key, raw):
            return Result(requeue_after=CATCH_UP)  # our last write is not in the cache yet
        try:
            ckpt = DynamoCheckpoint.from_dict(raw)
        except ApiDecodeError as err:
            # The CRD schema prevents this; a hand-edited stored object must not crash-loop.
            log.error("cannot read DynamoCheckpoint %s: %s", req, err, extra={"key": req.key})
            return None
        if ckpt.metadata.deleting:
            return None
        return await _Pass(self, raw, ckpt).run()


class _Pass:
    """One reconcile of one DynamoCheckpoint: the object as last written, and its status."""

    def __init__(self, r: CheckpointReconciler, raw: dict[str, Any], ckpt: DynamoCheckpoint):
        self.r = r
        self.client = r.client
        self.raw = raw
        self.ckpt = ckpt
        # `stored` is what the API server holds; `status` what this pass concluded so far.
        self.stored = ckpt.status
        self.status = ckpt.status
        self.key = f"{ckpt.metadata.namespace}/{ckpt.metadata.name}"

    # -- helpers ----------------------------------------------------------------------------

    @property
    def ns(self) -> str:
        return self.ckpt.metadata.namespace or ""

    @property
    def uid(self) -> str:
        return self.ckpt.metadata.uid or ""

    def event(self, type_: str, reason: str, message: str) -> None:
        self.r.recorder.event(self.raw, type_, reason, message, resource=DYNAMO_CHECKPOINTS)
        log.info("%s: %s: %s", self.key, reason, message, extra={"key": self.key})

    async def write(self, status: DynamoCheckpointStatus) -> None:
        """Write `status` if it differs from the stored one (one merge patch of status)."""
        if status != self.stored:
            self.raw = await patch_status_if_changed(
                self.client, DYNAMO_CHECKPOINTS, self.raw, status.to_dict()
            )
            self.r.fresh.wrote(self.key, self.raw)
        self.stored = self.status = status

    async def fail(self, condition: str, reason: str, message: str) -> Result | None:
        await self.write(st.failed(self.status, condition, reason, message))
        self.event("Warning", reason, message)
        await self.cleanup_job()
        return None

    # -- steps ------------------------------------------------------------------------------

    async def run(self) -> Result | None:
        ckpt = self.ckpt
        version = ckpt.artifact_version
        # Step 5 first: a new artifact version on a terminal checkpoint resets everything below.
        if ckpt.is_terminal and self.status.artifact_version not in (None, version):
            return await self.start_over(version)
        if ckpt.is_terminal:
            await self.cleanup_job()
            return None
        # Step 1: the checkpoint ID, as a label and (with the next status write) in status.
        checkpoint_id = resolve_checkpoint_id(ckpt)
        await self.stamp_label(checkpoint_id)
        self.status = st.identified(self.status, checkpoint_id, version)
        owner = st.first_owner(ckpt, await self.claimants(checkpoint_id))
        if owner is not None:
            return await self.fail(
                c.CONDITION_JOB_CREATED,
                c.REASON_DUPLICATE_CHECKPOINT_ID,
                f"checkpoint ID {checkpoint_id} is already owned by DynamoCheckpoint "
                f"{owner.metadata.namespace}/{owner.metadata.name}; delete one of them or give "
                f"this one another {c.LABEL_CHECKPOINT_ID} label",
            )
        if self.status.phase == c.PHASE_PENDING:
            return await self.create_job(checkpoint_id)  # step 2
        return await self.creating()  # steps 3 and 4

    async def stamp_label(self, checkpoint_id: str) -> None:
        if self.ckpt.metadata.labels.get(c.LABEL_CHECKPOINT_ID) == checkpoint_id:
            return
        self.raw = await self.client.patch_merge(
            DYNAMO_CHECKPOINTS,
            self.ckpt.metadata.name or "",
            {"metadata": {"labels": {c.LABEL_CHECKPOINT_ID: checkpoint_id}}},
            self.ns,
        )
        self.r.fresh.wrote(self.key, self.raw)

    async def claimants(self, checkpoint_id: str) -> list[DynamoCheckpoint]:
        """Every DynamoCheckpoint (any namespace) that claims `checkpoint_id`: artifacts live
        on shared storage under the ID alone."""
        found = await self.client.list(
            DYNAMO_CHECKPOINTS, self.r.view_namespace, index=(INDEX_CHECKPOINT_ID, checkpoint_id)
        )
        out = []
        for obj in found:
            try:
                out.append(DynamoCheckpoint.from_dict(obj))
            except ApiDecodeError:
                continue
        return out

    async def start_over(self, version: str) -> Result | None:
        previous = self.status.artifact_version
        await self.cleanup_job()
        for snap in await self.owned_snapshots():
            await self.delete_snapshot(snap)
        await self.write(st.started_over(self.status, version))
        self.event(
            "Normal",
            c.REASON_ARTIFACT_VERSION_CHANGED,
            f"artifact version changed from {previous} to {version}; starting a new capture",
        )
        # The status write does not wake this controller (status changes are filtered): go on.
        self.ckpt = attrs.evolve(self.ckpt, status=self.status)
        return await self.run()

    async def create_job(self, checkpoint_id: str) -> Result | None:
        try:
            job = build_job(self.ckpt, checkpoint_id, seccomp_profile=self.r.seccomp_profile)
        except JobShapeError as err:
            return await self.fail(
                c.CONDITION_JOB_CREATED,
                err.reason,
                f"DynamoCheckpoint {self.key}: cannot build the checkpoint Job: {err}",
            )
        name = job["metadata"]["name"]
        try:
            await self.client.create(JOBS, job, self.ns)
            created = True
        except AlreadyExists:
            existing = await self.client.reader.get(JOBS, name, self.ns)
            if not _controlled_by(existing, self.uid):
                owner = controller_uid_index(existing)
                return await self.fail(
                    c.CONDITION_JOB_CREATED,
                    c.REASON_JOB_CONFLICT,
                    f"Job {self.ns}/{name} exists and is not controlled by this "
                    f"DynamoCheckpoint (controller uid {owner[0] if owner else 'none'})",
                )
            created = False  # ours, from a pass that ended before its status write: adopt
        await self.write(st.creating(self.status, name))
        self.event(
            "Normal",
            c.REASON_JOB_CREATED,
            f"{'created' if created else 'adopted'} Job {name} to capture checkpoint "
            f"{checkpoint_id}",
        )
        deprecated = self.ckpt.spec.job.deprecated_fields_set
        if deprecated:
            self.event(
                "Warning",
                c.REASON_DEPRECATED_FIELD_IGNORED,
                f"spec.job.{' and spec.job.'.join(deprecated)} "
                f"{'is' if len(deprecated) == 1 else 'are'} deprecated and ignored: checkpoint "
                "Jobs never retry and are deleted once the checkpoint is Ready or Failed",
            )
        return await self.creating()

    async def current_job(self) -> dict[str, Any] | None:
        """The Job of this attempt: from the cache, confirmed live when the cache lacks it."""
        name = self.status.job_name or job_name(
            self.status.checkpoint_id or "", self.ckpt.artifact_version
        )
        try:
            return await self.client.get(JOBS, name, self.ns, view=self.r._job_view)
        except NotFound:
            pass
        try:
            return await self.client.reader.get(JOBS, name, self.ns)
        except NotFound:
            return None

    async def creating(self) -> Result | None:
        # Step 3/4: the Job, its pod, the PodSnapshot.
        job = await self.current_job()
        name = self.status.job_name or "?"
        if job is None:
            return await self.fail(
                c.CONDITION_JOB_COMPLETED,
                c.REASON_JOB_DELETED,
                f"Job {self.ns}/{name} was deleted before it completed",
            )
        if not _controlled_by(job, self.uid):
            return await self.fail(
                c.CONDITION_JOB_COMPLETED,
                c.REASON_JOB_CONFLICT,
                f"Job {self.ns}/{name} is not controlled by this DynamoCheckpoint",
            )
        outcome = st.job_outcome(job)
        if outcome is not None and not outcome.succeeded:
            return await self.fail(c.CONDITION_JOB_COMPLETED, outcome.reason, outcome.message)
        pod = await self.job_pod(job)
        snap = await self.pod_snapshot(pod)
        if isinstance(snap, Result):
            return snap
        if snap is None:
            # No pod yet: its creation event brings us back.
            return None
        _, psnap = snap
        # Recorded with this pass's status write (one write, not two).
        self.status = attrs.evolve(self.status, pod_snapshot_name=psnap.metadata.name)
        verdict = st.pod_snapshot_verdict(psnap)
        if verdict.failed:
            return await self.fail(c.CONDITION_JOB_COMPLETED, verdict.reason, verdict.message)
        if verdict.ready and outcome is not None:
            ready = st.ready(self.status, outcome.message, now())
            await self.write(ready)
            self.event(
                "Normal",
                c.REASON_CHECKPOINT_READY,
                f"checkpoint {self.status.checkpoint_id} captured by PodSnapshot "
                f"{psnap.metadata.name}",
            )
            await self.cleanup_job()
            return None
        if verdict.ready:
            message = (
                f"PodSnapshot {psnap.metadata.name} is Ready; waiting for Job {name} to complete"
            )
        else:
            pod_name = meta(pod or {}).get("name")
            message = f"waiting for PodSnapshot {psnap.metadata.name} to capture pod {pod_name}"
        await self.write(attrs.evolve(self.status, message=message))
        return None

    async def job_pod(self, job: Obj) -> dict[str, Any] | None:
        """The Job's pod: labelled with the Job's name and controlled by the Job (by UID)."""
        job_uid = str(meta(job).get("uid") or "")
        pods = await self.client.list(
            PODS,
            self.ns,
            index=(INDEX_CONTROLLER_UID, job_uid),
            view=self.r._pod_view,
        )
        name = meta(job).get("name")
        mine = [
            p
            for p in pods
            if (meta(p).get("labels") or {}).get(c.LABEL_JOB_NAME) == name
            and not meta(p).get("deletionTimestamp")
        ]
        # backoffLimit 0: there is one pod; the oldest is the one if a second ever appears.
        mine.sort(key=lambda p: str(meta(p).get("creationTimestamp") or ""))
        return mine[0] if mine else None

    async def owned_snapshots(self) -> list[dict[str, Any]]:
        """PodSnapshots with the owner label and this checkpoint as controller (never by name)."""
        found = await self.client.list(
            POD_SNAPSHOTS, self.ns, index=(INDEX_CONTROLLER_UID, self.uid)
        )
        owner = self.ckpt.metadata.name
        return [
            s for s in found if (meta(s).get("labels") or {}).get(c.LABEL_SNAPSHOT_OWNER) == owner
        ]

    async def delete_snapshot(self, snap: Obj) -> None:
        # NotFound: gone already; Conflict: another incarnation, not ours to delete.
        with contextlib.suppress(NotFound, Conflict):
            await self.client.delete(
                POD_SNAPSHOTS, str(meta(snap).get("name")), self.ns, uid=meta(snap).get("uid")
            )

    async def pod_snapshot(
        self, pod: dict[str, Any] | None
    ) -> tuple[dict[str, Any], PodSnapshot] | Result | None:
        """This attempt's PodSnapshot, created once the pod exists. A PodSnapshot of an earlier
        attempt (another pod UID) is deleted first."""
        pod_uid = str(meta(pod).get("uid") or "") if pod is not None else ""
        owned = await self.owned_snapshots()
        if not owned and self.status.pod_snapshot_name:
            # Recorded but not cached (yet): a live read tells lag from a deletion.
            with contextlib.suppress(NotFound):
                live = await self.client.reader.get(
                    POD_SNAPSHOTS, self.status.pod_snapshot_name, self.ns
                )
                if _controlled_by(live, self.uid):
                    owned = [live]
        for raw in owned:
            snap = PodSnapshot.from_dict(raw)
            if pod is not None and snap.spec.pod_ref.uid not in (None, pod_uid):
                await self.delete_snapshot(raw)
                continue
            return raw, snap
        if pod is None:
            return None
        body = self.snapshot_body(pod)
        try:
            created = await self.client.create(POD_SNAPSHOTS, body, self.ns)
        except AlreadyExists:
            existing = await self.client.reader.get(
                POD_SNAPSHOTS, body["metadata"]["name"], self.ns
            )
            if not _controlled_by(existing, self.uid):
                result = await self.fail(
                    c.CONDITION_JOB_COMPLETED,
                    c.REASON_POD_SNAPSHOT_CONFLICT,
                    f"PodSnapshot {self.ns}/{body['metadata']['name']} exists and is not "
                    "controlled by this DynamoCheckpoint",
                )
                return result or Result()
            snap = PodSnapshot.from_dict(existing)
            if snap.spec.pod_ref.uid not in (None, pod_uid):
                # The previous attempt's, still being deleted (its content goes first).
                await self.delete_snapshot(existing)
                return Result(requeue_after=REQUEUE_WHILE_DELETING)
            return existing, snap
        self.event(
            "Normal",
            c.REASON_POD_SNAPSHOT_CREATED,
            f"created PodSnapshot {body['metadata']['name']} for pod {meta(pod).get('name')}",
        )
        return created, PodSnapshot.from_dict(created)

    def snapshot_body(self, pod: Obj) -> dict[str, Any]:
        ckpt = self.ckpt
        body: dict[str, Any] = {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_POD_SNAPSHOT,
            "metadata": {
                "name": ckpt.metadata.name,
                "namespace": self.ns,
                "labels": {
                    c.LABEL_SNAPSHOT_OWNER: ckpt.metadata.name,
                    c.LABEL_CHECKPOINT_ID: self.status.checkpoint_id,
                },
            },
            "spec": {
                "source": {
                    "podRef": {
                        "name": meta(pod).get("name"),
                        "uid": meta(pod).get("uid"),
                        "containers": [ckpt.spec.job.target_container_name_or_default],
                    }
                }
            },
        }
        # GC deletes the PodSnapshot with its DynamoCheckpoint; owns() maps its events back.
        return set_controller_reference(self.raw, body, DYNAMO_CHECKPOINTS)

    async def cleanup_job(self) -> None:
        """After a terminal phase the Job has done its part: delete it (and, in the background,
        its pod), only if it is still the one this checkpoint controls (UID precondition)."""
        name = self.status.job_name
        if not name:
            return
        try:
            job = await self.client.get(JOBS, name, self.ns, view=self.r._job_view)
        except NotFound:
            return
        if not _controlled_by(job, self.uid) or meta(job).get("deletionTimestamp"):
            return
        try:
            await self.client.delete(
                JOBS, name, self.ns, uid=meta(job).get("uid"), propagation_policy="Background"
            )
        except (NotFound, Conflict):
            return
        self.event("Normal", c.REASON_JOB_DELETED_AFTER_TERMINAL, f"deleted Job {name}")
