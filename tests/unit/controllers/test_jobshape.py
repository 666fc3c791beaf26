"""The checkpoint Job built from a DynamoCheckpoint (SPEC §3, §4.1 step 2)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dynamo_snapshot.api import DynamoCheckpoint
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.controllers.jobshape import JobShapeError, build_job, job_name

UID = "0b7c6e1e-0000-4000-8000-000000000001"


def checkpoint(job: dict[str, Any] | None = None, **meta: Any) -> DynamoCheckpoint:
    raw: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DYNAMO_CHECKPOINT,
        "metadata": {"name": "ck", "namespace": "ns", "uid": UID, **meta},
        "spec": {
            "identity": {"model": "m", "backendFramework": "vllm"},
            "job": job
            or {
                "podTemplateSpec": {
                    "metadata": {"labels": {"app": "w"}, "annotations": {"keep": "me"}},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [
                            {
                                "name": "main",
                                "image": "w",
                                "env": [{"name": "A", "value": "1"}],
                                "livenessProbe": {"httpGet": {"path": "/h", "port": 1}},
                                "startupProbe": {"httpGet": {"path": "/h", "port": 1}},
                                "readinessProbe": {"httpGet": {"path": "/r", "port": 1}},
                            },
                            {"name": "side", "image": "s"},
                        ],
                    },
                }
            },
        },
    }
    return DynamoCheckpoint.from_dict(raw)


def _container(job: dict[str, Any], name: str) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    (found,) = [ctr for ctr in pod["containers"] if ctr["name"] == name]
    return dict(found)


def test_job_identity_labels_owner_and_retry_policy() -> None:
    job = build_job(checkpoint(), "abc123")
    assert job["metadata"]["name"] == "checkpoint-job-abc123-1" == job_name("abc123", "1")
    assert job["metadata"]["namespace"] == "ns"
    assert job["metadata"]["labels"] == {
        c.LABEL_SNAPSHOT_OWNER: "ck",
        c.LABEL_CHECKPOINT_ID: "abc123",
    }
    (ref,) = job["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DYNAMO_CHECKPOINT,
        "name": "ck",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    template = job["spec"]["template"]
    assert template["spec"]["restartPolicy"] == "Never"
    assert template["metadata"]["labels"] == {
        "app": "w",
        c.LABEL_SNAPSHOT_OWNER: "ck",
        c.LABEL_IS_CHECKPOINT_SOURCE: "true",
        c.LABEL_CHECKPOINT_ID: "abc123",
    }
    assert template["metadata"]["annotations"] == {
        "keep": "me",
        c.ANNOTATION_ARTIFACT_VERSION: "1",
        "sidecar.istio.io/inject": "false",
        "linkerd.io/inject": "disabled",
    }


def test_artifact_version_and_deadline_come_from_the_checkpoint() -> None:
    ck = checkpoint(annotations={c.ANNOTATION_ARTIFACT_VERSION: "7"})
    raw = ck.to_dict()
    raw["spec"]["job"]["activeDeadlineSeconds"] = 60
    job = build_job(DynamoCheckpoint.from_dict(raw), "abc")
    assert job["metadata"]["name"] == "checkpoint-job-abc-7"
    assert job["spec"]["activeDeadlineSeconds"] == 60
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations[c.ANNOTATION_ARTIFACT_VERSION] == "7"


def test_deprecated_backoff_limit_is_ignored() -> None:
    raw = checkpoint().to_dict()
    raw["spec"]["job"]["backoffLimit"] = 5
    raw["spec"]["job"]["ttlSecondsAfterFinished"] = 100
    job = build_job(DynamoCheckpoint.from_dict(raw), "abc")
    assert job["spec"]["backoffLimit"] == 0
    assert "ttlSecondsAfterFinished" not in job["spec"]


def test_control_volume_env_and_probe_rewrite_on_the_target_only() -> None:
    job = build_job(checkpoint(), "abc")
    pod = job["spec"]["template"]["spec"]
    assert {"name": "snapshot-control", "emptyDir": {}} in pod["volumes"]
    main = _container(job, "main")
    assert {
        "name": "snapshot-control",
        "mountPath": "/snapshot-control",
        "subPath": "main",
    } in main["volumeMounts"]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env == {
        "A": "1",
        "SNAPSHOT_CONTROL_DIR": "/snapshot-control",
        "DYN_SNAPSHOT_CONTROL_DIR": "/snapshot-control",
    }
    assert main["readinessProbe"] == {
        "exec": {"command": ["cat", "/snapshot-control/ready-for-snapshot"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
        "successThreshold": 1,
    }
    assert "livenessProbe" not in main
    assert "startupProbe" not in main
    side = _container(job, "side")
    assert "volumeMounts" not in side
    assert "env" not in side


def test_user_set_control_env_wins() -> None:
    raw = checkpoint().to_dict()
    main = raw["spec"]["job"]["podTemplateSpec"]["spec"]["containers"][0]
    main["env"] = [
        {"name": "DYN_SNAPSHOT_CONTROL_DIR", "value": "/mine"},
        {"name": "SNAPSHOT_CONTROL_DIR", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
    ]
    job = build_job(DynamoCheckpoint.from_dict(raw), "abc")
    env = _container(job, "main")["env"]
    assert env == main["env"]  # nothing added, nothing overwritten


@pytest.mark.parametrize(
    ("shared_memory", "size"),
    [(None, "8Gi"), ({"size": "16Gi"}, "16Gi"), ({"disabled": True, "size": "1Gi"}, None)],
)
def test_dev_shm_sized_or_disabled(shared_memory: Any, size: Any) -> None:
    raw = checkpoint().to_dict()
    if shared_memory is not None:
        raw["spec"]["job"]["sharedMemory"] = shared_memory
    job = build_job(DynamoCheckpoint.from_dict(raw), "abc")
    pod = job["spec"]["template"]["spec"]
    shm_volumes = [v for v in pod["volumes"] if v["name"] == "shared-memory"]
    shm_mounts = [
        m for m in _container(job, "main")["volumeMounts"] if m["mountPath"] == "/dev/shm"
    ]
    if size is None:
        assert shm_volumes == []
        assert shm_mounts == []
    else:
        assert shm_volumes == [
            {"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": size}}
        ]
        assert shm_mounts == [{"name": "shared-memory", "mountPath": "/dev/shm"}]


def test_seccomp_profile_is_set_unless_the_user_chose_one() -> None:
    job = build_job(checkpoint(), "abc")
    assert job["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": c.SECCOMP_LOCALHOST_PROFILE,
    }
    raw = checkpoint().to_dict()
    own = {"type": "RuntimeDefault"}
    raw["spec"]["job"]["podTemplateSpec"]["spec"]["securityContext"] = {"seccompProfile": own}
    job = build_job(DynamoCheckpoint.from_dict(raw), "abc")
    assert job["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == own
    job = build_job(checkpoint(), "abc", seccomp_profile=None)
    assert "securityContext" not in job["spec"]["template"]["spec"]


def test_input_is_not_modified() -> None:
    ck = checkpoint()
    before = copy.deepcopy(ck.to_dict())
    build_job(ck, "abc")
    assert ck.to_dict() == before


def test_missing_target_container_fails_naming_it() -> None:
    raw = checkpoint().to_dict()
    raw["spec"]["job"]["targetContainerName"] = "worker"
    with pytest.raises(JobShapeError, match=r"no container named 'worker'.*main, side") as err:
        build_job(DynamoCheckpoint.from_dict(raw), "abc")
    assert err.value.reason == c.REASON_INVALID_POD_TEMPLATE


def test_a_checkpoint_id_that_cannot_name_a_job_fails() -> None:
    with pytest.raises(JobShapeError, match="not a DNS-1123 label") as err:
        build_job(checkpoint(), "Has_Upper")
    assert err.value.reason == c.REASON_INVALID_CHECKPOINT_ID
    with pytest.raises(JobShapeError):
        build_job(checkpoint(), "x" * 50)
