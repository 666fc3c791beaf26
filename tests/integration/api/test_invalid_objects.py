"""The apiserver rejects invalid objects, and every rejection names the offending field.

Each row is a valid object with one thing wrong; the valid baseline itself is accepted (the
first test), so each rejection is caused by that one change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from tests.integration.api.rest import MERGE_PATCH, call, group_path, message

SAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "samples"
Obj = dict[str, Any]

PLURAL = {
    c.KIND_DYNAMO_CHECKPOINT: c.PLURAL_DYNAMO_CHECKPOINTS,
    c.KIND_POD_SNAPSHOT: c.PLURAL_POD_SNAPSHOTS,
    c.KIND_POD_SNAPSHOT_CONTENT: c.PLURAL_POD_SNAPSHOT_CONTENTS,
}


def sample(name: str) -> Obj:
    obj: Obj = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    if obj["kind"] == c.KIND_POD_SNAPSHOT_CONTENT:
        # Cluster-scoped: a name of its own per test, so tests never collide.
        obj["metadata"]["name"] = f"podsnapshotcontent-{uuid.uuid4()}"
    return obj


def collection(obj: Obj, namespace: str) -> str:
    scoped = obj["kind"] != c.KIND_POD_SNAPSHOT_CONTENT
    return group_path(PLURAL[obj["kind"]], namespace if scoped else None)


def item(obj: Obj, namespace: str) -> str:
    return f"{collection(obj, namespace)}/{obj['metadata']['name']}"


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node = obj
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, last = path.split(".")
        node = obj
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


# (sample, mutation, field the message must name, a word of the reason)
CREATE_CASES = [
    pytest.param("podsnapshot", _set("spec.source.podRef.containers", ["main", "sidecar"]),
                 "spec.source.podRef.containers", "at most 1", id="two-target-containers"),
    pytest.param("podsnapshot", _set("spec.source.podRef.containers", ["Main_1"]),
                 "spec.source.podRef.containers", "DNS-1123", id="bad-container-name"),
    pytest.param("podsnapshot", _set("spec.source.podRef.containers", []),
                 "spec.source.podRef.containers", "at least 1", id="no-target-container"),
    pytest.param("podsnapshot", _drop("spec.source.podRef.name"),
                 "spec.source.podRef.name", "Required", id="pod-ref-without-name"),
    pytest.param("podsnapshot", _set("spec.source.podRef.name", "Bad_Pod"),
                 "spec.source.podRef.name", "should match", id="bad-pod-name"),
    pytest.param("podsnapshot", _drop("spec"), "spec", "Required", id="podsnapshot-without-spec"),
    pytest.param("podsnapshotcontent", _drop("spec.source.nodeName"),
                 "spec.source.nodeName", "Required", id="content-without-node-name"),
    pytest.param("podsnapshotcontent", _set("spec.source.nodeName", ""),
                 "spec.source.nodeName", "at least 1", id="content-with-empty-node-name"),
    pytest.param("podsnapshotcontent", _drop("spec.snapshotRef.uid"),
                 "spec.snapshotRef.uid", "Required", id="content-back-link-without-uid"),
    pytest.param("podsnapshotcontent", _set("spec.snapshotRef.namespace", "Not A Namespace"),
                 "spec.snapshotRef.namespace", "should match", id="content-bad-namespace"),
    pytest.param("podsnapshotcontent", _set("spec.source.podRef.containers", ["a", "b"]),
                 "spec.source.podRef.containers", "at most 1", id="content-two-containers"),
    pytest.param("dynamocheckpoint", _set("spec.identity.backendFramework", "tgi"),
                 "spec.identity.backendFramework", "Unsupported value", id="unknown-backend"),
    pytest.param("dynamocheckpoint", _set("spec.job.activeDeadlineSeconds", -5),
                 "spec.job.activeDeadlineSeconds", "greater than or equal to 1",
                 id="negative-deadline"),
    pytest.param("dynamocheckpoint", _set("spec.identity.tensorParallelSize", 0),
                 "spec.identity.tensorParallelSize", "greater than or equal to 1",
                 id="zero-tensor-parallel"),
    pytest.param("dynamocheckpoint", _drop("spec.identity.model"),
                 "spec.identity.model", "Required", id="identity-without-model"),
    pytest.param("dynamocheckpoint", _set("spec.job.targetContainerName", "Main"),
                 "spec.job.targetContainerName", "should match", id="bad-target-container-name"),
    pytest.param("dynamocheckpoint", _set("spec.job.sharedMemory", {"size": "lots"}),
                 "spec.job.sharedMemory.size", "should match", id="bad-shared-memory-quantity"),
    pytest.param("dynamocheckpoint", _set("spec.job.sharedMemory", "8Gi"),
                 "spec.job.sharedMemory", "must be of type object",
                 id="shared-memory-bare-quantity"),
    pytest.param("dynamocheckpoint", _set("spec.job.sharedMemory", {"disabled": False}),
                 "spec.job.sharedMemory", "size is required unless",
                 id="shared-memory-enabled-without-size"),
    pytest.param("dynamocheckpoint", _set("spec.job.backoffLimit", -1),
                 "spec.job.backoffLimit", "greater than or equal to 0",
                 id="negative-deprecated-backoff-limit"),
    pytest.param("dynamocheckpoint", _set("spec.job.podTemplateSpec.spec", {}),
                 "spec.job.podTemplateSpec.spec.containers", "Required",
                 id="pod-template-without-containers"),
    pytest.param("dynamocheckpoint", _drop("spec.job"), "spec.job", "Required",
                 id="checkpoint-without-job"),
    pytest.param("dynamocheckpoint", _set("spec.identity.extraParameters", {"k": 1}),
                 "spec.identity.extraParameters.k", "must be of type string",
                 id="extra-parameter-not-a-string"),
]  # fmt: skip


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("name", ["podsnapshot", "podsnapshotcontent", "dynamocheckpoint"])
async def test_baselines_are_valid(kube_api: ApiClient, namespace: str, name: str) -> None:
    obj = sample(name)
    status, body = await call(
        kube_api, "POST", collection(obj, namespace), obj, query=[("dryRun", "All")]
    )
    assert status == 201, message(body)


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize(("name", "mutate", "field", "reason"), CREATE_CASES)
async def test_invalid_object_is_rejected_naming_the_field(
    kube_api: ApiClient,
    namespace: str,
    name: str,
    mutate: Callable[[Obj], None],
    field: str,
    reason: str,
) -> None:
    obj = sample(name)
    mutate(obj)
    status, body = await call(kube_api, "POST", collection(obj, namespace), obj)
    text = message(body)
    assert status == 422, text
    assert f"{field}:" in text or f"{field} " in text, text
    assert reason in text, text
    causes = {cause.get("field") for cause in body["details"]["causes"]}
    assert field in causes, causes


# (sample, merge patch of the spec, field named, the CEL message)
UPDATE_CASES = [
    pytest.param("podsnapshot", {"spec": {"source": {"podRef": {"name": "other-pod"}}}},
                 "spec", "spec is immutable", id="podsnapshot-retarget"),
    pytest.param("podsnapshot", {"spec": {"source": {"podRef": {"uid": None}}}},
                 "spec", "spec is immutable", id="podsnapshot-unpin-uid"),
    pytest.param("podsnapshotcontent", {"spec": {"source": {"nodeName": "node-b"}}},
                 "spec", "spec is immutable", id="content-move-node"),
    pytest.param("podsnapshotcontent", {"spec": {"snapshotRef": {"uid": "forged"}}},
                 "spec", "spec is immutable", id="content-rewrite-back-link"),
    pytest.param("dynamocheckpoint", {"spec": {"identity": {"model": "other/model"}}},
                 "spec.identity", "spec.identity is immutable", id="checkpoint-identity-model"),
    pytest.param("dynamocheckpoint", {"spec": {"identity": {"extraParameters": {"x": "y"}}}},
                 "spec.identity", "spec.identity is immutable", id="checkpoint-identity-extra"),
]  # fmt: skip


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize(("name", "patch", "field", "reason"), UPDATE_CASES)
async def test_immutable_spec_change_is_rejected(
    kube_api: ApiClient, namespace: str, name: str, patch: Obj, field: str, reason: str
) -> None:
    obj = sample(name)
    status, body = await call(kube_api, "POST", collection(obj, namespace), obj)
    assert status == 201, message(body)
    try:
        status, body = await call(
            kube_api, "PATCH", item(obj, namespace), patch, content_type=MERGE_PATCH
        )
        text = message(body)
        assert status == 422, text
        assert f"{field}: Invalid value" in text, text
        assert reason in text, text
    finally:
        await call(kube_api, "DELETE", item(obj, namespace))


@pytest.mark.usefixtures("crds")
async def test_checkpoint_job_may_change_and_status_is_validated(
    kube_api: ApiClient, namespace: str
) -> None:
    obj = sample("dynamocheckpoint")
    status, body = await call(kube_api, "POST", collection(obj, namespace), obj)
    assert status == 201, message(body)
    # Only the identity is frozen: the job (how to produce the artifact) may be edited.
    status, body = await call(
        kube_api,
        "PATCH",
        item(obj, namespace),
        {"spec": {"job": {"activeDeadlineSeconds": 600}}},
        content_type=MERGE_PATCH,
    )
    assert status == 200, message(body)
    assert body["spec"]["job"]["activeDeadlineSeconds"] == 600
    # Status is validated too: an unknown phase is refused through the status subresource.
    status, body = await call(
        kube_api,
        "PATCH",
        item(obj, namespace) + "/status",
        {"status": {"phase": "Exploded"}},
        content_type=MERGE_PATCH,
    )
    assert status == 422, message(body)
    assert "status.phase" in message(body)


def test_there_are_at_least_fifteen_invalid_cases() -> None:
    assert len(CREATE_CASES) + len(UPDATE_CASES) >= 15
