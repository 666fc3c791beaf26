"""The three CustomResourceDefinitions, defined once, in Python (SPEC §2).

`hack/gen_crds.py` writes `crds()` to `manifests/crds/*.yaml`; a unit test fails when the
committed YAML differs from what this module produces. Validation lives here rather than in
the controllers because the apiserver then rejects a bad object at `kubectl apply`, with a
message that names the field, before any reconciler sees it.

The CEL rules carry the invariants a schema alone cannot say:
- PodSnapshot and PodSnapshotContent `spec` never change (`self == oldSelf`): a capture that
  is in flight must not be retargeted, and the content's back link must stay true.
- DynamoCheckpoint `spec.identity` never changes: it names the artifact (the checkpoint ID).
- `podRef.containers` holds exactly one DNS label: the one container to dump.
"""

from __future__ import annotations

from typing import Final

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api import schema as s
from dynamo_snapshot.api.schema import Schema

PART_OF_LABELS: Final = {"app.kubernetes.io/part-of": "dynamo-snapshot"}

_IMMUTABLE_SPEC = s.rule("self == oldSelf", "spec is immutable")


def _pod_ref() -> Schema:
    return s.obj(
        "The source pod, in the PodSnapshot's namespace.",
        {
            "name": s.string(
                "Name of the source pod.",
                min_length=1,
                max_length=253,
                pattern=s.DNS_SUBDOMAIN_PATTERN,
            ),
            "uid": s.string(
                "UID of the source pod; when set, a same-named recreation is refused "
                "(StalePodReference).",
                min_length=1,
                max_length=128,
            ),
            "containers": s.array(
                "The container to dump. Exactly one container name (a DNS label).",
                s.string("A container name.", max_length=63),
                min_items=1,
                max_items=1,
                validations=[
                    s.rule(
                        "self.size() == 1 && "
                        f"self.all(name, name.matches('{s.DNS_LABEL_PATTERN}'))",
                        "containers must hold exactly one container name, a DNS-1123 label",
                    )
                ],
            ),
        },
        required=["name", "containers"],
    )


def _root(description: str, spec: Schema, status: Schema) -> Schema:
    return s.obj(
        description,
        {
            "apiVersion": s.string("APIVersion of this object."),
            "kind": s.string("Kind of this object."),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        required=["spec"],
    )


def _crd(
    *,
    kind: str,
    plural: str,
    short_name: str,
    scope: str,
    columns: list[Schema],
    root: Schema,
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{c.GROUP}", "labels": dict(PART_OF_LABELS)},
        "spec": {
            "group": c.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
            },
            "scope": scope,
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def pod_snapshot_crd() -> Schema:
    spec = s.obj(
        "What to capture. Immutable.",
        {"source": s.obj("The workload to capture.", {"podRef": _pod_ref()}, required=["podRef"])},
        required=["source"],
        validations=[_IMMUTABLE_SPEC],
    )
    status = s.obj(
        "Observed state, written by the PodSnapshot controller.",
        {
            "boundSnapshotContentName": s.string(
                "The cluster-scoped PodSnapshotContent bound to this PodSnapshot.",
                max_length=253,
            ),
            "conditions": s.conditions(
                "Ready and Failed; at most one is True, neither True means in progress."
            ),
        },
    )
    return _crd(
        kind=c.KIND_POD_SNAPSHOT,
        plural=c.PLURAL_POD_SNAPSHOTS,
        short_name=c.SHORT_NAME_POD_SNAPSHOT,
        scope="Namespaced",
        columns=[
            s.printer_column(
                "Content", ".status.boundSnapshotContentName", "Bound PodSnapshotContent"
            ),
            s.READY_COLUMN,
            s.AGE_COLUMN,
        ],
        root=_root("A request to checkpoint one container of one pod.", spec, status),
    )


def pod_snapshot_content_crd() -> Schema:
    spec = s.obj(
        "The work order for the node agent. Immutable.",
        {
            "snapshotRef": s.obj(
                "Back link to the PodSnapshot this content is bound to.",
                {
                    "namespace": s.string(
                        "Namespace of the PodSnapshot.",
                        min_length=1,
                        max_length=63,
                        pattern=s.DNS_LABEL_PATTERN,
                    ),
                    "name": s.string(
                        "Name of the PodSnapshot.",
                        min_length=1,
                        max_length=253,
                        pattern=s.DNS_SUBDOMAIN_PATTERN,
                    ),
                    "uid": s.string("UID of the PodSnapshot.", min_length=1, max_length=128),
                },
                required=["namespace", "name", "uid"],
            ),
            "source": s.obj(
                "The pod to capture and the node that must capture it.",
                {
                    "podRef": _pod_ref(),
                    "nodeName": s.string(
                        "The node whose agent captures the pod (also the "
                        f"{c.LABEL_SNAPSHOT_NODE} label).",
                        min_length=1,
                        max_length=253,
                        pattern=s.DNS_SUBDOMAIN_PATTERN,
                    ),
                },
                required=["podRef", "nodeName"],
            ),
        },
        required=["snapshotRef", "source"],
        validations=[_IMMUTABLE_SPEC],
    )
    status = s.obj(
        "Observed state, written only by the node agent through the status subresource.",
        {"conditions": s.conditions("Ready and Failed, as set by the node agent.")},
    )
    return _crd(
        kind=c.KIND_POD_SNAPSHOT_CONTENT,
        plural=c.PLURAL_POD_SNAPSHOT_CONTENTS,
        short_name=c.SHORT_NAME_POD_SNAPSHOT_CONTENT,
        scope="Cluster",
        columns=[
            s.printer_column("PodSnapshot", ".spec.snapshotRef.name", "Bound PodSnapshot"),
            s.printer_column(
                "Namespace", ".spec.snapshotRef.namespace", "Namespace of the PodSnapshot"
            ),
            s.READY_COLUMN,
            s.AGE_COLUMN,
        ],
        root=_root("The cluster-scoped work order of one PodSnapshot.", spec, status),
    )


def dynamo_checkpoint_crd() -> Schema:
    identity = s.obj(
        "What the artifact is; hashed into the checkpoint ID. Immutable after creation.",
        {
            "model": s.string(
                "Model identifier, e.g. Qwen/Qwen3-0.6B.", min_length=1, max_length=512
            ),
            "backendFramework": s.string("Inference backend.", enum=c.BACKEND_FRAMEWORKS),
            "dynamoVersion": s.string("Dynamo platform version.", max_length=128),
            "tensorParallelSize": s.integer(
                "Tensor parallel size.", minimum=1, default=c.DEFAULT_PARALLEL_SIZE
            ),
            "pipelineParallelSize": s.integer(
                "Pipeline parallel size.", minimum=1, default=c.DEFAULT_PARALLEL_SIZE
            ),
            "dtype": s.string("Data type, e.g. bf16.", max_length=64),
            "maxModelLen": s.integer("Maximum sequence length.", minimum=1),
            "extraParameters": s.string_map(
                "Further parameters that distinguish artifacts.",
                max_properties=64,
                max_value_length=1024,
            ),
        },
        required=["model", "backendFramework"],
        validations=[s.rule("self == oldSelf", "spec.identity is immutable")],
    )
    pod_template = s.obj(
        "The pod template of the checkpoint Job (a core/v1 PodTemplateSpec).",
        {
            "metadata": s.obj("Pod metadata.", preserve_unknown_fields=True),
            "spec": s.obj(
                "Pod spec.",
                {
                    "containers": s.array(
                        "The pod's containers; one of them is the target container.",
                        s.obj(
                            "A container.",
                            {"name": s.string("Container name.", min_length=1)},
                            required=["name"],
                            preserve_unknown_fields=True,
                        ),
                        min_items=1,
                    )
                },
                required=["containers"],
                preserve_unknown_fields=True,
            ),
        },
        required=["spec"],
    )
    job = s.obj(
        "How to run the workload to capture.",
        {
            "podTemplateSpec": pod_template,
            "targetContainerName": s.string(
                "The container to capture.",
                min_length=1,
                max_length=63,
                pattern=s.DNS_LABEL_PATTERN,
                default=c.DEFAULT_TARGET_CONTAINER_NAME,
            ),
            "activeDeadlineSeconds": s.integer(
                "Deadline of the checkpoint Job, in seconds.",
                minimum=1,
                bits=64,
                default=c.DEFAULT_ACTIVE_DEADLINE_SECONDS,
            ),
            "sharedMemory": s.obj(
                "The tmpfs mounted at /dev/shm in the checkpoint pod (upstream's shape). "
                f"When omitted, a {c.DEFAULT_SHARED_MEMORY_SIZE} tmpfs, as Dynamo components get.",
                {
                    "disabled": s.boolean(
                        "When true, no shared-memory volume is mounted and size is ignored."
                    ),
                    "size": s.quantity("Size limit of the tmpfs; required unless disabled."),
                },
                validations=[
                    s.rule(
                        "(has(self.disabled) && self.disabled) || has(self.size)",
                        "sharedMemory.size is required unless sharedMemory.disabled is true",
                    )
                ],
            ),
            "backoffLimit": s.integer(
                "Deprecated: accepted for upstream compatibility and ignored. Checkpoint Jobs "
                "never retry (backoffLimit 0); a Warning Event says so when set.",
                minimum=0,
            ),
            "ttlSecondsAfterFinished": s.integer(
                "Deprecated: accepted for upstream compatibility and ignored. The controller "
                "deletes the Job once the checkpoint is Ready or Failed; a Warning Event says so "
                "when set.",
                minimum=0,
            ),
        },
        required=["podTemplateSpec"],
    )
    spec = s.obj(
        "The checkpoint to produce.",
        {"identity": identity, "job": job},
        required=["identity", "job"],
    )
    status = s.obj(
        "Observed state, written by the checkpoint controller.",
        {
            "phase": s.string("Lifecycle phase.", enum=c.PHASES),
            "checkpointID": s.string("The artifact identity.", max_length=63),
            "jobName": s.string("The checkpoint Job.", max_length=63),
            "podSnapshotName": s.string("The PodSnapshot of the capture.", max_length=253),
            "createdAt": s.string("When the checkpoint became Ready.", fmt="date-time"),
            "message": s.string("Human-readable detail of the phase.", max_length=32768),
            "conditions": s.conditions("JobCreated and JobCompleted."),
            "artifactVersion": s.string(
                "The artifact version this status describes; bumping the "
                f"{c.ANNOTATION_ARTIFACT_VERSION} annotation on a terminal checkpoint starts a "
                "new capture.",
                max_length=63,
            ),
        },
    )
    return _crd(
        kind=c.KIND_DYNAMO_CHECKPOINT,
        plural=c.PLURAL_DYNAMO_CHECKPOINTS,
        short_name=c.SHORT_NAME_DYNAMO_CHECKPOINT,
        scope="Namespaced",
        columns=[
            s.printer_column("Model", ".spec.identity.model", "Model identifier"),
            s.printer_column("Backend", ".spec.identity.backendFramework", "Backend framework"),
            s.printer_column("Phase", ".status.phase", "Lifecycle phase"),
            s.printer_column("CheckpointID", ".status.checkpointID", "Artifact identity"),
            s.AGE_COLUMN,
        ],
        root=_root("A request to capture a warmed-up inference workload.", spec, status),
    )


def crds() -> dict[str, Schema]:
    """File name (under manifests/crds/) to CRD, in a fixed order."""
    return {
        f"{c.GROUP}_{c.PLURAL_DYNAMO_CHECKPOINTS}.yaml": dynamo_checkpoint_crd(),
        f"{c.GROUP}_{c.PLURAL_POD_SNAPSHOTS}.yaml": pod_snapshot_crd(),
        f"{c.GROUP}_{c.PLURAL_POD_SNAPSHOT_CONTENTS}.yaml": pod_snapshot_content_crd(),
    }
