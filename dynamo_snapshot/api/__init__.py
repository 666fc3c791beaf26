"""The nouns: the three custom resources of SPEC §2 as frozen attrs types, every label,
annotation, finalizer, condition type and reason as a constant, the checkpoint ID, and the CRD
definitions the manifests are generated from.

One module a concept:
- `constants`: names of the contract.
- `wire`: typed reads of the API's JSON, timestamps.
- `meta`: object metadata.
- `conditions`: standard conditions and the rules for setting them.
- `dynamocheckpoint`, `podsnapshot`, `podsnapshotcontent`: the types, each with
  `from_dict`/`to_dict` (the only place JSON is converted).
- `checkpoint_id`: the artifact identity.
- `schema`, `crds`: the CRDs, written to YAML by hack/gen_crds.py.
"""

from dynamo_snapshot.api.checkpoint_id import identity_hash, resolve_checkpoint_id
from dynamo_snapshot.api.conditions import (
    Condition,
    find_condition,
    is_true,
    remove_condition,
    set_condition,
)
from dynamo_snapshot.api.dynamocheckpoint import (
    DynamoCheckpoint,
    DynamoCheckpointIdentity,
    DynamoCheckpointJob,
    DynamoCheckpointSpec,
    DynamoCheckpointStatus,
    SharedMemory,
)
from dynamo_snapshot.api.meta import ObjectMeta, OwnerReference
from dynamo_snapshot.api.podsnapshot import (
    PodReference,
    PodSnapshot,
    PodSnapshotSpec,
    PodSnapshotStatus,
)
from dynamo_snapshot.api.podsnapshotcontent import (
    PodSnapshotContent,
    PodSnapshotContentSpec,
    PodSnapshotContentStatus,
    SnapshotReference,
    content_name_for,
)
from dynamo_snapshot.api.wire import ApiDecodeError

__all__ = [
    "ApiDecodeError",
    "Condition",
    "DynamoCheckpoint",
    "DynamoCheckpointIdentity",
    "DynamoCheckpointJob",
    "DynamoCheckpointSpec",
    "DynamoCheckpointStatus",
    "ObjectMeta",
    "OwnerReference",
    "PodReference",
    "PodSnapshot",
    "PodSnapshotContent",
    "PodSnapshotContentSpec",
    "PodSnapshotContentStatus",
    "PodSnapshotSpec",
    "PodSnapshotStatus",
    "SharedMemory",
    "SnapshotReference",
    "content_name_for",
    "find_condition",
    "identity_hash",
    "is_true",
    "remove_condition",
    "resolve_checkpoint_id",
    "set_condition",
]
