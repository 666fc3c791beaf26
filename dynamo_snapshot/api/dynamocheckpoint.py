"""DynamoCheckpoint (namespaced, `dckpt`): a user's request to capture one warmed-up workload.

`spec.identity` says what the artifact is (and yields the checkpoint ID, see `checkpoint_id`),
`spec.job` how to run the workload that produces it. Status is written by the checkpoint
controller only.

Optional scalars are None when absent so that reading and writing an object never adds fields
the user did not write; the `*_or_default` properties give the value the API defaults to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api import wire
from dynamo_snapshot.api.conditions import Condition, conditions_from
from dynamo_snapshot.api.meta import ObjectMeta
from dynamo_snapshot.api.wire import JSON


@attrs.frozen
class DynamoCheckpointIdentity:
    model: str
    backend_framework: str
    dynamo_version: str | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    dtype: str | None = None
    max_model_len: int | None = None
    extra_parameters: Mapping[str, str] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> DynamoCheckpointIdentity:
        return cls(
            model=wire.req_str(data, "model", path),
            backend_framework=wire.req_str(data, "backendFramework", path),
            dynamo_version=wire.opt_str(data, "dynamoVersion", path),
            tensor_parallel_size=wire.opt_int(data, "tensorParallelSize", path),
            pipeline_parallel_size=wire.opt_int(data, "pipelineParallelSize", path),
            dtype=wire.opt_str(data, "dtype", path),
            max_model_len=wire.opt_int(data, "maxModelLen", path),
            extra_parameters=wire.str_map(data, "extraParameters", path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {"model": self.model, "backendFramework": self.backend_framework}
        wire.put(out, "dynamoVersion", self.dynamo_version)
        wire.put(out, "tensorParallelSize", self.tensor_parallel_size)
        wire.put(out, "pipelineParallelSize", self.pipeline_parallel_size)
        wire.put(out, "dtype", self.dtype)
        wire.put(out, "maxModelLen", self.max_model_len)
        if self.extra_parameters is not None:
            # An explicit `{}` is kept: it is what the user wrote (and hashes like absent).
            out["extraParameters"] = dict(self.extra_parameters)
        return out


def _quantity(data: Mapping[str, Any], key: str, path: str) -> str | int | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str | int) or isinstance(value, bool)):
        raise wire.ApiDecodeError(f"{path}.{key}: expected a quantity")
    return value


@attrs.frozen
class SharedMemory:
    """`/dev/shm` of the checkpoint pod, in upstream's shape `{disabled, size}`.

    Absent means an 8Gi tmpfs (upstream's default for every Dynamo component). When present and
    not disabled, `size` is required (a CEL rule on the CRD, as upstream's webhook insists).
    """

    disabled: bool | None = None
    # A resource.Quantity: "8Gi" or a plain integer number of bytes.
    size: str | int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> SharedMemory:
        return cls(
            disabled=wire.opt_bool(data, "disabled", path), size=_quantity(data, "size", path)
        )

    def to_dict(self) -> JSON:
        out: JSON = {}
        wire.put(out, "disabled", self.disabled)
        wire.put(out, "size", self.size)
        return out


@attrs.frozen
class DynamoCheckpointJob:
    # A core/v1 PodTemplateSpec, kept as JSON: this package does not model Kubernetes core
    # types, and the controller edits the template as a dict anyway.
    pod_template_spec: Mapping[str, Any]
    target_container_name: str | None = None
    active_deadline_seconds: int | None = None
    shared_memory: SharedMemory | None = None
    # Upstream's deprecated Job knobs: accepted so its YAML applies unchanged, never used (the
    # Job always gets backoffLimit 0 and is deleted by the controller after a terminal phase).
    backoff_limit: int | None = None
    ttl_seconds_after_finished: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> DynamoCheckpointJob:
        shm = data.get("sharedMemory")
        if shm is not None and not isinstance(shm, dict):
            raise wire.ApiDecodeError(
                f"{path}.sharedMemory: expected an object {{disabled, size}}, "
                f"got {type(shm).__name__}"
            )
        return cls(
            pod_template_spec=wire.obj(data, "podTemplateSpec", path, required=True),
            target_container_name=wire.opt_str(data, "targetContainerName", path),
            active_deadline_seconds=wire.opt_int(data, "activeDeadlineSeconds", path),
            shared_memory=(
                None if shm is None else SharedMemory.from_dict(shm, f"{path}.sharedMemory")
            ),
            backoff_limit=wire.opt_int(data, "backoffLimit", path),
            ttl_seconds_after_finished=wire.opt_int(data, "ttlSecondsAfterFinished", path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {"podTemplateSpec": dict(self.pod_template_spec)}
        wire.put(out, "targetContainerName", self.target_container_name)
        wire.put(out, "activeDeadlineSeconds", self.active_deadline_seconds)
        if self.shared_memory is not None:
            out["sharedMemory"] = self.shared_memory.to_dict()
        wire.put(out, "backoffLimit", self.backoff_limit)
        wire.put(out, "ttlSecondsAfterFinished", self.ttl_seconds_after_finished)
        return out

    @property
    def target_container_name_or_default(self) -> str:
        return self.target_container_name or c.DEFAULT_TARGET_CONTAINER_NAME

    @property
    def active_deadline_seconds_or_default(self) -> int:
        if self.active_deadline_seconds is None:
            return c.DEFAULT_ACTIVE_DEADLINE_SECONDS
        return self.active_deadline_seconds

    @property
    def shared_memory_size(self) -> str | int | None:
        """The `/dev/shm` size to mount, or None when the user disabled it."""
        shm = self.shared_memory
        if shm is None:
            return c.DEFAULT_SHARED_MEMORY_SIZE
        if shm.disabled:
            return None
        # The CRD requires size here; an object that bypassed validation gets the default.
        return shm.size if shm.size not in (None, "", 0) else c.DEFAULT_SHARED_MEMORY_SIZE

    @property
    def deprecated_fields_set(self) -> tuple[str, ...]:
        """Names of upstream's deprecated fields this object sets (each is ignored)."""
        out = []
        if self.backoff_limit is not None:
            out.append("backoffLimit")
        if self.ttl_seconds_after_finished is not None:
            out.append("ttlSecondsAfterFinished")
        return tuple(out)


@attrs.frozen
class DynamoCheckpointSpec:
    identity: DynamoCheckpointIdentity
    job: DynamoCheckpointJob

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "spec") -> DynamoCheckpointSpec:
        return cls(
            identity=DynamoCheckpointIdentity.from_dict(
                wire.obj(data, "identity", path, required=True), f"{path}.identity"
            ),
            job=DynamoCheckpointJob.from_dict(
                wire.obj(data, "job", path, required=True), f"{path}.job"
            ),
        )

    def to_dict(self) -> JSON:
        return {"identity": self.identity.to_dict(), "job": self.job.to_dict()}


@attrs.frozen
class DynamoCheckpointStatus:
    phase: str | None = None
    checkpoint_id: str | None = None
    job_name: str | None = None
    pod_snapshot_name: str | None = None
    created_at: dt.datetime | None = None
    message: str | None = None
    conditions: tuple[Condition, ...] = ()
    # The artifact version this status describes: a different annotation on a terminal
    # checkpoint means the user asked for a new capture (SPEC §4.1 step 5).
    artifact_version: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "status") -> DynamoCheckpointStatus:
        return cls(
            phase=wire.opt_str(data, "phase", path),
            checkpoint_id=wire.opt_str(data, "checkpointID", path),
            job_name=wire.opt_str(data, "jobName", path),
            pod_snapshot_name=wire.opt_str(data, "podSnapshotName", path),
            created_at=wire.opt_time(data, "createdAt", path),
            message=wire.opt_str(data, "message", path),
            conditions=conditions_from(data, path),
            artifact_version=wire.opt_str(data, "artifactVersion", path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {}
        wire.put(out, "phase", self.phase)
        wire.put(out, "checkpointID", self.checkpoint_id)
        wire.put(out, "jobName", self.job_name)
        wire.put(out, "podSnapshotName", self.pod_snapshot_name)
        if self.created_at is not None:
            out["createdAt"] = wire.format_time(self.created_at)
        wire.put(out, "message", self.message)
        wire.put(out, "conditions", wire.dicts(self.conditions))
        wire.put(out, "artifactVersion", self.artifact_version)
        return out


@attrs.frozen
class DynamoCheckpoint:
    metadata: ObjectMeta
    spec: DynamoCheckpointSpec
    status: DynamoCheckpointStatus = attrs.field(factory=DynamoCheckpointStatus)

    api_version: str = c.API_VERSION
    kind: str = c.KIND_DYNAMO_CHECKPOINT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DynamoCheckpoint:
        return cls(
            metadata=ObjectMeta.from_dict(wire.obj(data, "metadata", "")),
            spec=DynamoCheckpointSpec.from_dict(wire.obj(data, "spec", "", required=True)),
            status=DynamoCheckpointStatus.from_dict(wire.obj(data, "status", "")),
        )

    def to_dict(self) -> JSON:
        out: JSON = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": self.metadata.to_dict(),
            "spec": self.spec.to_dict(),
        }
        wire.put(out, "status", self.status.to_dict())
        return out

    @property
    def artifact_version(self) -> str:
        """The artifact version annotation, `"1"` when absent (SPEC §3)."""
        return self.metadata.annotations.get(
            c.ANNOTATION_ARTIFACT_VERSION, c.DEFAULT_ARTIFACT_VERSION
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.phase in c.TERMINAL_PHASES
