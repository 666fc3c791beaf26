"""The PodSnapshot controller's pure pieces: the content→PodSnapshot map, the back-link check,
the mirror of the content's conditions, and the indexes of the checkpoint controller."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamo_snapshot.api import PodSnapshot, PodSnapshotContent, PodSnapshotStatus
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.conditions import find_condition
from dynamo_snapshot.controllers.checkpoint import (
    checkpoint_id_index,
    controller_uid_index,
    source_pod_owner,
)
from dynamo_snapshot.controllers.podsnapshot import (
    back_link_matches,
    content_to_snapshot,
    failed_status,
    mirror,
)
from dynamo_snapshot.runtime import Request

T = "2026-12-01T10:00:00Z"


def snap() -> PodSnapshot:
    return PodSnapshot.from_dict(
        {
            "metadata": {"name": "s", "namespace": "ns", "uid": "u1"},
            "spec": {"source": {"podRef": {"name": "p", "containers": ["main"]}}},
        }
    )


def content(ref: dict[str, str], conds: Sequence[tuple[str, str, str]] = ()) -> PodSnapshotContent:
    return PodSnapshotContent.from_dict(
        {
            "metadata": {"name": "podsnapshotcontent-u1"},
            "spec": {
                "snapshotRef": ref,
                "source": {"podRef": {"name": "p", "containers": ["main"]}, "nodeName": "n"},
            },
            "status": {
                "conditions": [
                    {
                        "type": t,
                        "status": s,
                        "reason": r,
                        "message": r + "!",
                        "lastTransitionTime": T,
                    }
                    for t, s, r in conds
                ]
            },
        }
    )


OURS = {"namespace": "ns", "name": "s", "uid": "u1"}


def test_content_maps_back_to_its_snapshot() -> None:
    assert content_to_snapshot({"spec": {"snapshotRef": OURS}}) == [Request("ns", "s")]
    assert content_to_snapshot({"spec": {}}) == []


def test_back_link_must_match_namespace_name_and_uid() -> None:
    assert back_link_matches(content(OURS), snap())
    for key, value in (("namespace", "x"), ("name", "x"), ("uid", "u2")):
        assert not back_link_matches(content({**OURS, key: value}), snap())


def _cond(status: PodSnapshotStatus, type_: str) -> tuple[str, str, str] | None:
    found = find_condition(status.conditions, type_)
    return None if found is None else (found.status, found.reason, found.message)


def test_mirror_pending_ready_failed() -> None:
    empty = PodSnapshotStatus(bound_snapshot_content_name="podsnapshotcontent-u1")
    pending = mirror(empty, content(OURS))
    assert _cond(pending, "Ready") == ("False", "Pending", c.MESSAGE_WAITING_FOR_AGENT)
    assert _cond(pending, "Failed") is None
    assert mirror(pending, content(OURS)) == pending  # unchanged: no write
    ready = mirror(pending, content(OURS, [("Ready", "True", "Captured")]))
    assert _cond(ready, "Ready") == ("True", "Captured", "Captured!")
    failed = mirror(
        pending,
        content(OURS, [("Ready", "False", "LeaseCancelled"), ("Failed", "True", "LeaseCancelled")]),
    )
    assert _cond(failed, "Failed") == ("True", "LeaseCancelled", "LeaseCancelled!")
    assert _cond(failed, "Ready") == ("False", "LeaseCancelled", "LeaseCancelled!")
    # At most one is True.
    both = failed_status(ready, "SourcePodGone", "gone")
    assert _cond(both, "Ready") == ("False", "SourcePodGone", "gone")
    assert _cond(both, "Failed") == ("True", "SourcePodGone", "gone")


def test_indexes_and_pod_map() -> None:
    owned: dict[str, Any] = {
        "metadata": {
            "ownerReferences": [
                {"uid": "a", "controller": False},
                {"uid": "b", "controller": True},
            ]
        }
    }
    assert controller_uid_index(owned) == ["b"]
    assert controller_uid_index({"metadata": {}}) == []
    labelled = {"metadata": {"labels": {c.LABEL_CHECKPOINT_ID: "lbl"}}}
    assert checkpoint_id_index(labelled) == ["lbl"]
    assert checkpoint_id_index({**labelled, "status": {"checkpointID": "st"}}) == ["st"]
    assert checkpoint_id_index({"metadata": {}}) == []
    pod = {"metadata": {"namespace": "ns", "labels": {c.LABEL_SNAPSHOT_OWNER: "ck"}}}
    assert source_pod_owner(pod) == [Request("ns", "ck")]
    assert source_pod_owner({"metadata": {"namespace": "ns"}}) == []
