"""JSON -> attrs -> JSON is lossless, for the samples and for objects as the server returns
them (status, metadata the server adds); malformed objects fail naming the field."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from dynamo_snapshot.api import (
    ApiDecodeError,
    DynamoCheckpoint,
    PodSnapshot,
    PodSnapshotContent,
    content_name_for,
)
from dynamo_snapshot.api import constants as c

SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
TYPES: dict[str, Any] = {
    c.KIND_DYNAMO_CHECKPOINT: DynamoCheckpoint,
    c.KIND_POD_SNAPSHOT: PodSnapshot,
    c.KIND_POD_SNAPSHOT_CONTENT: PodSnapshotContent,
}


def _samples() -> list[Any]:
    return [
        pytest.param(yaml.safe_load(path.read_text()), id=path.stem)
        for path in sorted(SAMPLES.glob("*.yaml"))
    ]


def test_there_is_a_sample_of_each_kind() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in SAMPLES.glob("*.yaml")}
    assert kinds == set(TYPES)


@pytest.mark.parametrize("sample", _samples())
def test_samples_round_trip(sample: dict[str, Any]) -> None:
    original = copy.deepcopy(sample)
    obj = TYPES[sample["kind"]].from_dict(sample)
    assert obj.to_dict() == original
    assert sample == original  # from_dict does not modify its input


# Shaped as a GET from the apiserver: server-set metadata, defaults applied, status written.
SERVER_METADATA = {
    "name": "x",
    "namespace": "ns",
    "uid": "5b7f3c2a-8e41-4d0f-b6a9-0c1e2d3f4a5b",
    "resourceVersion": "4242",
    "generation": 2,
    "creationTimestamp": "2026-11-25T10:00:00Z",
    "deletionTimestamp": "2026-11-25T11:00:00Z",
    "deletionGracePeriodSeconds": 0,
    "labels": {c.LABEL_CHECKPOINT_ID: "abc"},
    "annotations": {c.ANNOTATION_ARTIFACT_VERSION: "3"},
    "finalizers": [c.FINALIZER_CONTENT_CLEANUP],
    "ownerReferences": [
        {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_DYNAMO_CHECKPOINT,
            "name": "owner",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ],
    "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1"}],
}
CONDITION = {
    "type": "Ready",
    "status": "True",
    "observedGeneration": 2,
    "lastTransitionTime": "2026-11-25T10:05:00Z",
    "reason": "Captured",
    "message": "captured",
}
POD_REF = {"name": "p", "uid": "u-2", "containers": ["main"]}

SERVER_DCKPT: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_DYNAMO_CHECKPOINT,
    "metadata": SERVER_METADATA,
    "spec": {
        "identity": {
            "model": "m",
            "backendFramework": "vllm",
            "tensorParallelSize": 1,
            "pipelineParallelSize": 1,
            "extraParameters": {},
        },
        "job": {
            "podTemplateSpec": {"spec": {"containers": [{"name": "main"}]}},
            "targetContainerName": "main",
            "activeDeadlineSeconds": 3600,
            "sharedMemory": {"disabled": False, "size": 1073741824},
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 300,
        },
    },
    "status": {
        "phase": "Ready",
        "checkpointID": "abc",
        "jobName": "checkpoint-job-abc-3",
        "podSnapshotName": "x",
        "createdAt": "2026-11-25T10:06:00Z",
        "message": "ready",
        "conditions": [CONDITION | {"type": "JobCreated"}],
        "artifactVersion": "3",
    },
}
SERVER_SNAP: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_POD_SNAPSHOT,
    "metadata": SERVER_METADATA,
    "spec": {"source": {"podRef": POD_REF}},
    "status": {
        "boundSnapshotContentName": "podsnapshotcontent-x",
        "conditions": [CONDITION],
    },
}
SERVER_CONTENT: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_POD_SNAPSHOT_CONTENT,
    "metadata": SERVER_METADATA,
    "spec": {
        "snapshotRef": {"namespace": "ns", "name": "x", "uid": "u-3"},
        "source": {"podRef": POD_REF, "nodeName": "node-a"},
    },
    "status": {"conditions": [CONDITION]},
}
SERVER_OBJECTS = {
    c.KIND_DYNAMO_CHECKPOINT: SERVER_DCKPT,
    c.KIND_POD_SNAPSHOT: SERVER_SNAP,
    c.KIND_POD_SNAPSHOT_CONTENT: SERVER_CONTENT,
}


@pytest.mark.parametrize("kind", sorted(SERVER_OBJECTS))
def test_server_shaped_objects_round_trip(kind: str) -> None:
    raw = SERVER_OBJECTS[kind]
    obj = TYPES[kind].from_dict(raw)
    assert obj.to_dict() == raw
    # And the typed side carries what reconcilers read.
    assert obj.metadata.deleting
    assert obj.metadata.controller_ref() is not None
    assert obj.metadata.creation_timestamp == dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)


def test_typed_accessors_and_defaults() -> None:
    minimal = DynamoCheckpoint.from_dict(
        yaml.safe_load((SAMPLES / "dynamocheckpoint-minimal.yaml").read_text())
    )
    assert minimal.spec.job.target_container_name_or_default == "main"
    assert minimal.spec.job.active_deadline_seconds_or_default == 3600
    assert minimal.artifact_version == "1"
    assert minimal.spec.job.shared_memory_size == "8Gi"  # absent: upstream's default
    assert minimal.spec.job.deprecated_fields_set == ()
    assert not minimal.is_terminal

    content = PodSnapshotContent.from_dict(SERVER_CONTENT)
    assert content.ready
    assert content.terminal
    assert not content.failed
    assert content.spec.pod_ref.target_container == "main"
    assert content.spec.node_name == "node-a"

    snap = PodSnapshot.from_dict(SERVER_SNAP)
    assert snap.ready
    assert not snap.failed
    assert content_name_for(snap.metadata.uid or "") == (
        "podsnapshotcontent-5b7f3c2a-8e41-4d0f-b6a9-0c1e2d3f4a5b"
    )


@pytest.mark.parametrize(
    ("shared_memory", "size"),
    [
        (None, "8Gi"),
        ({"size": "16Gi"}, "16Gi"),
        ({"disabled": False, "size": 1073741824}, 1073741824),
        ({"disabled": True, "size": "16Gi"}, None),
        ({"disabled": True}, None),
    ],
)
def test_shared_memory_size_in_upstream_shape(shared_memory: Any, size: Any) -> None:
    raw = copy.deepcopy(SERVER_DCKPT)
    if shared_memory is None:
        del raw["spec"]["job"]["sharedMemory"]
    else:
        raw["spec"]["job"]["sharedMemory"] = shared_memory
    assert DynamoCheckpoint.from_dict(raw).spec.job.shared_memory_size == size


def test_deprecated_job_fields_are_kept_and_named() -> None:
    job = DynamoCheckpoint.from_dict(SERVER_DCKPT).spec.job
    assert (job.backoff_limit, job.ttl_seconds_after_finished) == (3, 300)
    assert job.deprecated_fields_set == ("backoffLimit", "ttlSecondsAfterFinished")


def test_types_are_frozen_and_evolve_into_new_values() -> None:
    snap = PodSnapshot.from_dict(SERVER_SNAP)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.status = snap.status  # type: ignore[misc]
    bound = attrs.evolve(
        snap, status=attrs.evolve(snap.status, bound_snapshot_content_name="other")
    )
    assert bound.to_dict()["status"]["boundSnapshotContentName"] == "other"
    assert snap.status.bound_snapshot_content_name == "podsnapshotcontent-x"


@pytest.mark.parametrize(
    ("kind", "mutate", "field"),
    [
        (
            c.KIND_POD_SNAPSHOT,
            lambda o: o["spec"]["source"]["podRef"].pop("name"),
            "spec.source.podRef.name",
        ),
        (c.KIND_POD_SNAPSHOT, lambda o: o["spec"].pop("source"), "spec.source"),
        (
            c.KIND_POD_SNAPSHOT_CONTENT,
            lambda o: o["spec"]["source"].pop("nodeName"),
            "spec.source.nodeName",
        ),
        (
            c.KIND_POD_SNAPSHOT_CONTENT,
            lambda o: o["spec"]["snapshotRef"].pop("uid"),
            "spec.snapshotRef.uid",
        ),
        (
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["spec"]["identity"].update(tensorParallelSize="2"),
            "spec.identity.tensorParallelSize",
        ),
        (
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["spec"]["job"].update(sharedMemory=True),
            "spec.job.sharedMemory",
        ),
        (
            # Round 1's bare quantity is not upstream's shape: it names the field.
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["spec"]["job"].update(sharedMemory="8Gi"),
            "spec.job.sharedMemory",
        ),
        (
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["spec"]["job"].update(sharedMemory={"size": 1.5}),
            "spec.job.sharedMemory.size",
        ),
        (
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["spec"]["job"].update(sharedMemory={"disabled": "yes"}),
            "spec.job.sharedMemory.disabled",
        ),
        (
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["metadata"].update(labels={"a": 1}),
            "metadata.labels",
        ),
        (
            c.KIND_DYNAMO_CHECKPOINT,
            lambda o: o["status"].update(conditions=[{"type": "X"}]),
            "status.conditions[0]",
        ),
    ],
)
def test_malformed_objects_fail_naming_the_field(kind: str, mutate: Any, field: str) -> None:
    raw = copy.deepcopy(SERVER_OBJECTS[kind])
    mutate(raw)
    with pytest.raises(ApiDecodeError, match=field.replace("[", r"\[").replace("]", r"\]")):
        TYPES[kind].from_dict(raw)
