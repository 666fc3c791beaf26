"""Verdicts and status transitions of the checkpoint controller (SPEC §4.1)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dynamo_snapshot.api import DynamoCheckpoint, DynamoCheckpointStatus, PodSnapshot
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.conditions import find_condition
from dynamo_snapshot.controllers import checkpoint_state as st

T0 = dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=1)


def job(*conds: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "checkpoint-job-x-1"},
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": f"{r} detail"} for t, s, r in conds
            ]
        },
    }


def test_job_outcome() -> None:
    assert st.job_outcome(job()) is None
    assert st.job_outcome(job(("Complete", "False", ""))) is None
    done = st.job_outcome(job(("SuccessCriteriaMet", "True", "x"), ("Complete", "True", "x")))
    assert done == st.JobOutcome(True, "JobComplete", "Job checkpoint-job-x-1 completed")
    failed = st.job_outcome(job(("Failed", "True", "BackoffLimitExceeded")))
    assert failed is not None
    assert not failed.succeeded
    assert failed.reason == "JobFailed"
    assert "checkpoint-job-x-1" in failed.message
    assert "BackoffLimitExceeded detail" in failed.message
    deadline = st.job_outcome(job(("FailureTarget", "True", "DeadlineExceeded")))
    assert deadline is not None
    assert deadline.reason == "DeadlineExceeded"
    assert "exceeded its deadline" in deadline.message


def ckpt(name: str, uid: str, created: dt.datetime, *, deleting: bool = False) -> DynamoCheckpoint:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "uid": uid,
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if deleting:
        meta["deletionTimestamp"] = meta["creationTimestamp"]
    return DynamoCheckpoint.from_dict(
        {
            "metadata": meta,
            "spec": {
                "identity": {"model": "m", "backendFramework": "vllm"},
                "job": {"podTemplateSpec": {"spec": {"containers": [{"name": "main"}]}}},
            },
        }
    )


def test_first_owner_is_the_oldest_live_one() -> None:
    a = ckpt("a", "1", T0)
    b = ckpt("b", "2", T1)
    assert st.first_owner(a, [a, b]) is None
    assert st.first_owner(b, [a, b]) == a
    # Same second: the name breaks the tie, the same way on every replica.
    b_same = ckpt("b", "2", T0)
    assert st.first_owner(b_same, [a, b_same]) == a
    assert st.first_owner(a, [a, b_same]) is None
    # An owner being deleted gives the ID up.
    assert st.first_owner(b, [ckpt("a", "1", T0, deleting=True), b]) is None


def snap(conds: list[tuple[str, str, str]], bound: str | None = "content") -> PodSnapshot:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": t,
                "status": s,
                "reason": r,
                "message": f"{r} msg",
                "lastTransitionTime": "2026-12-01T10:00:00Z",
            }
            for t, s, r in conds
        ]
    }
    if bound:
        status["boundSnapshotContentName"] = bound
    return PodSnapshot.from_dict(
        {
            "metadata": {"name": "ck", "namespace": "ns"},
            "spec": {"source": {"podRef": {"name": "p", "containers": ["main"]}}},
            "status": status,
        }
    )


def test_pod_snapshot_verdict() -> None:
    assert st.pod_snapshot_verdict(snap([("Ready", "True", "Captured")])).ready
    # Ready but not bound is not Ready.
    assert not st.pod_snapshot_verdict(snap([("Ready", "True", "Captured")], bound=None)).ready
    pending = st.pod_snapshot_verdict(snap([("Ready", "False", "Pending")]))
    assert not pending.ready
    assert not pending.failed
    failed = st.pod_snapshot_verdict(
        snap([("Ready", "False", "CheckpointFailed"), ("Failed", "True", "CheckpointFailed")])
    )
    assert failed.failed
    assert failed.reason == "PodSnapshotFailed"
    assert failed.message == "PodSnapshot ck failed: CheckpointFailed: CheckpointFailed msg"


def test_transitions_pending_creating_ready() -> None:
    s0 = st.identified(DynamoCheckpointStatus(), "abc", "1")
    assert (s0.phase, s0.checkpoint_id, s0.artifact_version) == ("Pending", "abc", "1")
    s1 = st.creating(s0, "checkpoint-job-abc-1", now=T0)
    assert s1.phase == "Creating"
    assert s1.job_name == "checkpoint-job-abc-1"
    created = find_condition(s1.conditions, c.CONDITION_JOB_CREATED)
    completed = find_condition(s1.conditions, c.CONDITION_JOB_COMPLETED)
    assert created is not None
    assert (created.status, created.reason) == ("True", "JobCreated")
    assert completed is not None
    assert (completed.status, completed.reason) == ("False", "JobRunning")
    # Nothing changed: equal, so the reconciler skips the write.
    assert st.creating(s1, "checkpoint-job-abc-1", now=T1) == s1
    s2 = st.ready(s1, "Job checkpoint-job-abc-1 completed", T1)
    assert s2.phase == "Ready"
    assert s2.created_at == T1
    done = find_condition(s2.conditions, c.CONDITION_JOB_COMPLETED)
    assert done is not None
    assert (done.status, done.reason, done.last_transition_time) == ("True", "JobComplete", T1)


def test_failed_and_started_over() -> None:
    s1 = st.creating(st.identified(DynamoCheckpointStatus(), "abc", "1"), "j", now=T0)
    s2 = st.failed(s1, c.CONDITION_JOB_COMPLETED, "JobDeleted", "Job j was deleted", now=T1)
    assert s2.phase == "Failed"
    assert s2.message == "Job j was deleted"
    cond = find_condition(s2.conditions, c.CONDITION_JOB_COMPLETED)
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", "JobDeleted")
    s3 = st.started_over(s2, "2")
    assert s3 == DynamoCheckpointStatus(
        phase="Pending",
        checkpoint_id="abc",
        artifact_version="2",
        message="artifact version 2 requested; starting a new capture",
    )
