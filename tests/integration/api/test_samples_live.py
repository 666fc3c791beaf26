"""The samples are accepted by the real apiserver; what it returns (defaults applied, server
metadata, status written through the subresource) reads into the attrs types and writes back
unchanged; kubectl shows the printer columns of SPEC §2."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import (
    DynamoCheckpoint,
    PodSnapshot,
    PodSnapshotContent,
    resolve_checkpoint_id,
    set_condition,
)
from dynamo_snapshot.api import constants as c
from tests.integration.api.crds_fixture import Kubectl
from tests.integration.api.rest import MERGE_PATCH, call, group_path, message

SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def load(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    return obj


@pytest.mark.usefixtures("crds")
async def test_minimal_checkpoint_gets_the_api_defaults(
    kube_api: ApiClient, namespace: str
) -> None:
    status, body = await call(
        kube_api,
        "POST",
        group_path(c.PLURAL_DYNAMO_CHECKPOINTS, namespace),
        load("dynamocheckpoint-minimal"),
    )
    assert status == 201, message(body)
    ckpt = DynamoCheckpoint.from_dict(body)
    assert ckpt.spec.identity.tensor_parallel_size == 1
    assert ckpt.spec.identity.pipeline_parallel_size == 1
    assert ckpt.spec.job.target_container_name == "main"
    assert ckpt.spec.job.active_deadline_seconds == 3600
    assert ckpt.to_dict() == body
    # Defaults do not move the checkpoint ID: 0/absent and 1 hash alike.
    plain = attrs.evolve(ckpt.spec.identity, tensor_parallel_size=None, pipeline_parallel_size=None)
    assert resolve_checkpoint_id(ckpt) == resolve_checkpoint_id(
        attrs.evolve(ckpt, spec=attrs.evolve(ckpt.spec, identity=plain))
    )


@pytest.mark.usefixtures("crds")
async def test_upstream_shaped_checkpoint_is_accepted_unchanged(
    kube_api: ApiClient, namespace: str
) -> None:
    """YAML written for NVIDIA Dynamo's Go operator: sharedMemory as an object and the
    deprecated Job fields are stored as written and read into the types."""
    sent = load("dynamocheckpoint-upstream")
    status, body = await call(
        kube_api, "POST", group_path(c.PLURAL_DYNAMO_CHECKPOINTS, namespace), sent
    )
    assert status == 201, message(body)
    assert body["spec"]["job"]["sharedMemory"] == {"disabled": False, "size": "16Gi"}
    ckpt = DynamoCheckpoint.from_dict(body)
    assert ckpt.to_dict() == body
    assert ckpt.spec.job.shared_memory_size == "16Gi"
    assert ckpt.spec.job.deprecated_fields_set == ("backoffLimit", "ttlSecondsAfterFinished")


@pytest.mark.usefixtures("crds")
async def test_samples_round_trip_through_the_server_with_status(
    kube_api: ApiClient, namespace: str, kube_cluster: Kubectl
) -> None:
    content_name = f"podsnapshotcontent-{uuid.uuid4()}"
    created: list[str] = []
    try:
        # DynamoCheckpoint, with a status as the checkpoint controller writes it.
        path = group_path(c.PLURAL_DYNAMO_CHECKPOINTS, namespace)
        status, body = await call(kube_api, "POST", path, load("dynamocheckpoint"))
        assert status == 201, message(body)
        ckpt = DynamoCheckpoint.from_dict(body)
        assert ckpt.to_dict() == body
        ckpt_id = resolve_checkpoint_id(ckpt)
        conds = set_condition((), c.CONDITION_JOB_CREATED, "True", "JobCreated", "", now=T0)
        new_status = attrs.evolve(
            ckpt.status,
            phase=c.PHASE_READY,
            checkpoint_id=ckpt_id,
            job_name=f"checkpoint-job-{ckpt_id}-1",
            pod_snapshot_name=ckpt.metadata.name,
            created_at=T0,
            message="checkpoint ready",
            conditions=conds,
        )
        status, body = await call(
            kube_api,
            "PATCH",
            f"{path}/{ckpt.metadata.name}/status",
            {"status": new_status.to_dict()},
            content_type=MERGE_PATCH,
        )
        assert status == 200, message(body)
        assert DynamoCheckpoint.from_dict(body).status == new_status
        assert DynamoCheckpoint.from_dict(body).to_dict() == body

        # PodSnapshot, bound, Ready mirrored.
        path = group_path(c.PLURAL_POD_SNAPSHOTS, namespace)
        status, body = await call(kube_api, "POST", path, load("podsnapshot"))
        assert status == 201, message(body)
        snap = PodSnapshot.from_dict(body)
        assert snap.to_dict() == body
        snap_status = attrs.evolve(
            snap.status,
            bound_snapshot_content_name=content_name,
            conditions=set_condition(
                (), c.CONDITION_READY, "True", c.REASON_CAPTURED, "captured", now=T0
            ),
        )
        status, body = await call(
            kube_api,
            "PATCH",
            f"{path}/{snap.metadata.name}/status",
            {"status": snap_status.to_dict()},
            content_type=MERGE_PATCH,
        )
        assert status == 200, message(body)
        assert PodSnapshot.from_dict(body).status == snap_status
        assert PodSnapshot.from_dict(body).to_dict() == body

        # PodSnapshotContent (cluster-scoped), Failed as an agent writes it.
        obj = load("podsnapshotcontent")
        obj["metadata"]["name"] = content_name
        path = group_path(c.PLURAL_POD_SNAPSHOT_CONTENTS)
        status, body = await call(kube_api, "POST", path, obj)
        assert status == 201, message(body)
        created.append(f"{path}/{content_name}")
        content = PodSnapshotContent.from_dict(body)
        assert content.to_dict() == body
        assert content.metadata.namespace is None
        failed = set_condition(
            (), c.CONDITION_FAILED, "True", c.REASON_SOURCE_POD_GONE, "pod qwen3-worker-0 gone"
        )
        status, body = await call(
            kube_api,
            "PATCH",
            f"{path}/{content_name}/status",
            {"status": {"conditions": [x.to_dict() for x in failed]}},
            content_type=MERGE_PATCH,
        )
        assert status == 200, message(body)
        assert PodSnapshotContent.from_dict(body).failed
        assert PodSnapshotContent.from_dict(body).to_dict() == body

        # kubectl shows the printer columns, with values from the objects above.
        header, row = kube_cluster.kubectl("get", "dckpt", "-n", namespace).stdout.splitlines()
        assert header.split() == ["NAME", "MODEL", "BACKEND", "PHASE", "CHECKPOINTID", "AGE"]
        assert row.split()[:5] == ["qwen3-0-6b-vllm", "Qwen/Qwen3-0.6B", "vllm", "Ready", ckpt_id]
        header, row = kube_cluster.kubectl("get", "podsnap", "-n", namespace).stdout.splitlines()
        assert header.split() == ["NAME", "CONTENT", "READY", "AGE"]
        assert row.split()[:3] == ["qwen3-worker-0", content_name, "True"]
        table = kube_cluster.kubectl("get", "podsnapcontent", content_name).stdout
        header, row = table.splitlines()
        assert header.split() == ["NAME", "PODSNAPSHOT", "NAMESPACE", "READY", "AGE"]
        # Failed, not Ready: the Ready column is empty, so AGE follows NAMESPACE.
        assert row.split()[:3] == [content_name, "qwen3-worker-0", "default"]
        # All three at once, as an operator would type it.
        both = kube_cluster.kubectl("get", "dckpt,podsnap,podsnapcontent", "-n", namespace).stdout
        for column in ("CHECKPOINTID", "CONTENT", "PODSNAPSHOT"):
            assert column in both
    finally:
        for item in created:
            await call(kube_api, "DELETE", item)


@pytest.mark.usefixtures("crds")
def test_kubectl_knows_the_short_names_and_scopes(kube_cluster: Kubectl) -> None:
    out = kube_cluster.kubectl("api-resources", "--api-group=nvidia.com", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["dynamocheckpoints"][1:4] == ["dckpt", "nvidia.com/v1alpha1", "true"]
    assert rows["podsnapshots"][1:4] == ["podsnap", "nvidia.com/v1alpha1", "true"]
    assert rows["podsnapshotcontents"][1:4] == ["podsnapcontent", "nvidia.com/v1alpha1", "false"]
