"""What the checkpoint controller concludes from what it observes: pure functions, unit-tested.

- `job_outcome`: the checkpoint Job's verdict from its conditions (the Job controller's words).
- `first_owner`: which of several DynamoCheckpoints of one checkpoint ID owns it (the oldest).
- `pod_snapshot_verdict`: Ready / Failed / in progress of the PodSnapshot.
- the status transitions (`creating`, `failed`, `ready`, `started_over`), each returning a new
  `DynamoCheckpointStatus`, so the reconciler writes status only when `new != old`.

Condition use (SPEC §2 lists `JobCreated` and `JobCompleted`): a failure before the Job exists
(duplicate ID, bad template, Job name taken) sets `JobCreated=False`; a failure after it (Job
failed or deleted, PodSnapshot failed or a foreign one) sets `JobCompleted=False`; the reason is
the same word as the Warning Event's, and `status.message` names the object and the cause.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.conditions import Condition, find_condition, set_condition
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpoint, DynamoCheckpointStatus
from dynamo_snapshot.api.podsnapshot import PodSnapshot


@attrs.frozen
class JobOutcome:
    """A finished Job: `succeeded`, and the reason and message of the deciding condition."""

    succeeded: bool
    reason: str
    message: str


def _true_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def job_outcome(job: Mapping[str, Any]) -> JobOutcome | None:
    """None while the Job runs. `FailureTarget` counts as failed: since Kubernetes 1.31 the Job
    controller sets it at once and `Failed` only after the pods terminated, and the verdict
    cannot change in between."""
    name = (job.get("metadata") or {}).get("name", "?")
    if _true_condition(job, c.JOB_CONDITION_COMPLETE) is not None:
        return JobOutcome(True, c.REASON_JOB_COMPLETE, f"Job {name} completed")
    failed = _true_condition(job, c.JOB_CONDITION_FAILED) or _true_condition(
        job, c.JOB_CONDITION_FAILURE_TARGET
    )
    if failed is None:
        return None
    job_reason = str(failed.get("reason") or "")
    detail = str(failed.get("message") or job_reason or "failed")
    if job_reason == c.JOB_REASON_DEADLINE_EXCEEDED:
        return JobOutcome(
            False, c.REASON_JOB_DEADLINE_EXCEEDED, f"Job {name} exceeded its deadline: {detail}"
        )
    return JobOutcome(False, c.REASON_JOB_FAILED, f"Job {name} failed: {detail}")


def _age_key(ckpt: DynamoCheckpoint) -> tuple[dt.datetime, str, str]:
    created = ckpt.metadata.creation_timestamp or dt.datetime.max.replace(tzinfo=dt.UTC)
    return (created, ckpt.metadata.namespace or "", ckpt.metadata.name or "")


def first_owner(
    me: DynamoCheckpoint, same_id: Iterable[DynamoCheckpoint]
) -> DynamoCheckpoint | None:
    """The DynamoCheckpoint that owns the ID when it is not `me`, else None.

    The oldest live one owns it (creation time, then namespace/name: a total order every
    replica agrees on). Objects being deleted give the ID up.
    """
    candidates = [
        other
        for other in same_id
        if other.metadata.uid != me.metadata.uid and not other.metadata.deleting
    ]
    if not candidates:
        return None
    oldest = min(candidates, key=_age_key)
    return oldest if _age_key(oldest) < _age_key(me) else None


@attrs.frozen
class PodSnapshotVerdict:
    ready: bool
    failed: bool
    reason: str
    message: str


def pod_snapshot_verdict(snap: PodSnapshot) -> PodSnapshotVerdict:
    """Ready only when bound and `Ready=True`; Failed on `Failed=True` (with its reason)."""
    name = snap.metadata.name
    failed = find_condition(snap.status.conditions, c.CONDITION_FAILED)
    if failed is not None and failed.status == "True":
        return PodSnapshotVerdict(
            False,
            True,
            c.REASON_POD_SNAPSHOT_FAILED,
            f"PodSnapshot {name} failed: {failed.reason}: {failed.message}",
        )
    ready = find_condition(snap.status.conditions, c.CONDITION_READY)
    if snap.status.bound_snapshot_content_name and ready is not None and ready.status == "True":
        return PodSnapshotVerdict(True, False, ready.reason, f"PodSnapshot {name} is Ready")
    return PodSnapshotVerdict(False, False, c.REASON_PENDING, f"PodSnapshot {name} in progress")


def _cond(
    conds: tuple[Condition, ...], type_: str, status: str, reason: str, message: str, now: Any
) -> tuple[Condition, ...]:
    return set_condition(conds, type_, status, reason, message, now=now)  # type: ignore[arg-type]


def identified(
    status: DynamoCheckpointStatus, checkpoint_id: str, artifact_version: str
) -> DynamoCheckpointStatus:
    """Step 1: the ID stamped in status, and Pending when nothing happened yet."""
    return attrs.evolve(
        status,
        checkpoint_id=checkpoint_id,
        artifact_version=artifact_version,
        phase=status.phase or c.PHASE_PENDING,
    )


def creating(
    status: DynamoCheckpointStatus, job_name: str, now: dt.datetime | None = None
) -> DynamoCheckpointStatus:
    conds = _cond(
        status.conditions,
        c.CONDITION_JOB_CREATED,
        "True",
        c.REASON_JOB_CREATED,
        f"Job {job_name} created",
        now,
    )
    conds = _cond(
        conds,
        c.CONDITION_JOB_COMPLETED,
        "False",
        c.REASON_JOB_RUNNING,
        f"Job {job_name} is running",
        now,
    )
    return attrs.evolve(
        status,
        phase=c.PHASE_CREATING,
        job_name=job_name,
        message=f"Job {job_name} created; waiting for its pod",
        conditions=conds,
    )


def failed(
    status: DynamoCheckpointStatus,
    condition_type: str,
    reason: str,
    message: str,
    now: dt.datetime | None = None,
) -> DynamoCheckpointStatus:
    return attrs.evolve(
        status,
        phase=c.PHASE_FAILED,
        message=message,
        conditions=_cond(status.conditions, condition_type, "False", reason, message, now),
    )


def ready(
    status: DynamoCheckpointStatus, job_message: str, now: dt.datetime
) -> DynamoCheckpointStatus:
    conds = _cond(
        status.conditions,
        c.CONDITION_JOB_COMPLETED,
        "True",
        c.REASON_JOB_COMPLETE,
        job_message,
        now,
    )
    return attrs.evolve(
        status,
        phase=c.PHASE_READY,
        created_at=now,
        message=f"checkpoint {status.checkpoint_id} is Ready",
        conditions=conds,
    )


def started_over(status: DynamoCheckpointStatus, artifact_version: str) -> DynamoCheckpointStatus:
    """Step 5: a new artifact version on a terminal checkpoint: back to Pending, ID kept."""
    return DynamoCheckpointStatus(
        phase=c.PHASE_PENDING,
        checkpoint_id=status.checkpoint_id,
        artifact_version=artifact_version,
        message=f"artifact version {artifact_version} requested; starting a new capture",
    )
