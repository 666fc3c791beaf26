"""PodSnapshotContent (cluster-scoped, `podsnapcontent`): the node agent's work order.

Named `podsnapshotcontent-<PodSnapshot UID>` and labelled `nvidia.com/snapshot-node=<node>`
so that each node agent lists and watches only its own. `spec.snapshotRef` is the back link to
the PodSnapshot (checked on every bind, see SPEC §4.2). Status is written only by the agent,
only through the status subresource. `spec` is immutable (a CEL rule on the CRD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api import wire
from dynamo_snapshot.api.conditions import Condition, conditions_from, is_true
from dynamo_snapshot.api.meta import ObjectMeta
from dynamo_snapshot.api.podsnapshot import PodReference
from dynamo_snapshot.api.wire import JSON


def content_name_for(pod_snapshot_uid: str) -> str:
    """The one name the content of a PodSnapshot may have (SPEC §2)."""
    return f"{c.POD_SNAPSHOT_CONTENT_NAME_PREFIX}{pod_snapshot_uid}"


@attrs.frozen
class SnapshotReference:
    """Back link from a content to its PodSnapshot."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str) -> SnapshotReference:
        return cls(
            namespace=wire.req_str(data, "namespace", path),
            name=wire.req_str(data, "name", path),
            uid=wire.req_str(data, "uid", path),
        )

    def to_dict(self) -> JSON:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}


@attrs.frozen
class PodSnapshotContentSpec:
    snapshot_ref: SnapshotReference
    pod_ref: PodReference
    node_name: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "spec") -> PodSnapshotContentSpec:
        source = wire.obj(data, "source", path, required=True)
        src_path = f"{path}.source"
        return cls(
            snapshot_ref=SnapshotReference.from_dict(
                wire.obj(data, "snapshotRef", path, required=True), f"{path}.snapshotRef"
            ),
            pod_ref=PodReference.from_dict(
                wire.obj(source, "podRef", src_path, required=True), f"{src_path}.podRef"
            ),
            node_name=wire.req_str(source, "nodeName", src_path),
        )

    def to_dict(self) -> JSON:
        return {
            "snapshotRef": self.snapshot_ref.to_dict(),
            "source": {"podRef": self.pod_ref.to_dict(), "nodeName": self.node_name},
        }


@attrs.frozen
class PodSnapshotContentStatus:
    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "status") -> PodSnapshotContentStatus:
        return cls(conditions=conditions_from(data, path))

    def to_dict(self) -> JSON:
        out: JSON = {}
        wire.put(out, "conditions", wire.dicts(self.conditions))
        return out


@attrs.frozen
class PodSnapshotContent:
    metadata: ObjectMeta
    spec: PodSnapshotContentSpec
    status: PodSnapshotContentStatus = attrs.field(factory=PodSnapshotContentStatus)

    api_version: str = c.API_VERSION
    kind: str = c.KIND_POD_SNAPSHOT_CONTENT

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PodSnapshotContent:
        return cls(
            metadata=ObjectMeta.from_dict(wire.obj(data, "metadata", "")),
            spec=PodSnapshotContentSpec.from_dict(wire.obj(data, "spec", "", required=True)),
            status=PodSnapshotContentStatus.from_dict(wire.obj(data, "status", "")),
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

    @property
    def terminal(self) -> bool:
        """Ready or Failed: the agent has nothing left to do for this content."""
        return self.ready or self.failed
