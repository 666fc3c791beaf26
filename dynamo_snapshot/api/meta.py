"""`metadata` of our objects: the fields our reconcilers read, and everything else kept verbatim.

Reconcilers need name, namespace, uid, resourceVersion (optimistic locking), generation
(observedGeneration), labels, annotations, finalizers, owner references and the two
timestamps. The apiserver also sends managedFields, generateName and more; those travel in
`extra` untouched, so an object read and written back loses nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from dynamo_snapshot.api import wire
from dynamo_snapshot.api.wire import JSON

_TYPED_KEYS = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
    }
)


@attrs.frozen
class OwnerReference:
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "ownerReferences[]") -> OwnerReference:
        return cls(
            api_version=wire.req_str(data, "apiVersion", path),
            kind=wire.req_str(data, "kind", path),
            name=wire.req_str(data, "name", path),
            uid=wire.req_str(data, "uid", path),
            controller=wire.opt_bool(data, "controller", path),
            block_owner_deletion=wire.opt_bool(data, "blockOwnerDeletion", path),
        )

    def to_dict(self) -> JSON:
        out: JSON = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
        }
        wire.put(out, "controller", self.controller)
        wire.put(out, "blockOwnerDeletion", self.block_owner_deletion)
        return out


@attrs.frozen
class ObjectMeta:
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: dt.datetime | None = None
    deletion_timestamp: dt.datetime | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    finalizers: tuple[str, ...] = ()
    owner_references: tuple[OwnerReference, ...] = ()
    # Every other metadata key (managedFields, generateName, ...), kept as the server sent it.
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "metadata") -> ObjectMeta:
        return cls(
            name=wire.opt_str(data, "name", path),
            namespace=wire.opt_str(data, "namespace", path),
            uid=wire.opt_str(data, "uid", path),
            resource_version=wire.opt_str(data, "resourceVersion", path),
            generation=wire.opt_int(data, "generation", path),
            creation_timestamp=wire.opt_time(data, "creationTimestamp", path),
            deletion_timestamp=wire.opt_time(data, "deletionTimestamp", path),
            labels=wire.str_map(data, "labels", path) or {},
            annotations=wire.str_map(data, "annotations", path) or {},
            finalizers=wire.str_list(data, "finalizers", path),
            owner_references=tuple(
                OwnerReference.from_dict(ref, f"{path}.ownerReferences[{i}]")
                for i, ref in enumerate(wire.obj_list(data, "ownerReferences", path))
            ),
            extra={k: v for k, v in data.items() if k not in _TYPED_KEYS},
        )

    def to_dict(self) -> JSON:
        out: JSON = dict(self.extra)
        wire.put(out, "name", self.name)
        wire.put(out, "namespace", self.namespace)
        wire.put(out, "uid", self.uid)
        wire.put(out, "resourceVersion", self.resource_version)
        wire.put(out, "generation", self.generation)
        if self.creation_timestamp is not None:
            out["creationTimestamp"] = wire.format_time(self.creation_timestamp)
        if self.deletion_timestamp is not None:
            out["deletionTimestamp"] = wire.format_time(self.deletion_timestamp)
        wire.put(out, "labels", dict(self.labels))
        wire.put(out, "annotations", dict(self.annotations))
        wire.put(out, "finalizers", list(self.finalizers))
        wire.put(out, "ownerReferences", wire.dicts(self.owner_references))
        return out

    @property
    def deleting(self) -> bool:
        return self.deletion_timestamp is not None

    def controller_ref(self) -> OwnerReference | None:
        """The owner reference with `controller: true`, if any (at most one by API rule)."""
        return next((ref for ref in self.owner_references if ref.controller), None)
