"""PodSnapshot (namespaced, `podsnap`): "dump this container of this pod", bound to one content.

The model is CSI's VolumeSnapshot: the namespaced request names its source; the PodSnapshot
controller creates the cluster-scoped PodSnapshotContent (the node agent's work order) and
records it in `status.boundSnapshotContentName`. `spec` is immutable (a CEL rule on the CRD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api import wire
from dynamo_snapshot.api.conditions import Condition, conditions_from, is_true
from dynamo_snapshot.api.meta import ObjectMeta
from dynamo_snapshot.api.wire import JSON


@attrs.frozen
class PodReference:
    """A pod in the PodSnapshot's namespace; `uid` pins one incarnation of it."""

    name: str
    containers: tuple[str, ...]
    uid: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> PodReference:
        return cls(
            name=wire.req_str(data, "name", path),
            uid=wire.opt_str(data, "uid", path),
            containers=wire.str_list(data, "containers", path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {"name": self.name}
        wire.put(out, "uid", self.uid)
        out["containers"] = list(self.containers)
        return out

    @property
    def target_container(self) -> str | None:
        """The one container to dump (the CRD allows exactly one)."""
        return self.containers[0] if len(self.containers) == 1 else None


@attrs.frozen
class PodSnapshotSpec:
    pod_ref: PodReference

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "spec") -> PodSnapshotSpec:
        source = wire.obj(data, "source", path, required=True)
        src_path = f"{path}.source"
        return cls(
            pod_ref=PodReference.from_dict(
                wire.obj(source, "podRef", src_path, required=True), f"{src_path}.podRef"
            )
        )

    def to_dict(self) -> JSON:
        return {"source": {"podRef": self.pod_ref.to_dict()}}


@attrs.frozen
class PodSnapshotStatus:
    bound_snapshot_content_name: str | None = None
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "status") -> PodSnapshotStatus:
        return cls(
            bound_snapshot_content_name=wire.opt_str(data, "boundSnapshotContentName", path),
            conditions=conditions_from(data, path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {}
        wire.put(out, "boundSnapshotContentName", self.bound_snapshot_content_name)
        wire.put(out, "conditions", wire.dicts(self.conditions))
        return out


@attrs.frozen
class PodSnapshot:
    metadata: ObjectMeta
    spec: PodSnapshotSpec
    status: PodSnapshotStatus = attrs.field(factory=PodSnapshotStatus)

    api_version: str = c.API_VERSION
    kind: str = c.KIND_POD_SNAPSHOT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PodSnapshot:
        return cls(
            metadata=ObjectMeta.from_dict(wire.obj(data, "metadata", "")),
            spec=PodSnapshotSpec.from_dict(wire.obj(data, "spec", "", required=True)),
            status=PodSnapshotStatus.from_dict(wire.obj(data, "status", "")),
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
    def ready(self) -> bool:
        return is_true(self.status.conditions, c.CONDITION_READY)

    @property
    def failed(self) -> bool:
        return is_true(self.status.conditions, c.CONDITION_FAILED)
