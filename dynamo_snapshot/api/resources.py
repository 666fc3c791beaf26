"""The REST collections of the three custom resources, for the framework's clients and caches."""

from __future__ import annotations

from typing import Final

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime.resource import Resource

DYNAMO_CHECKPOINTS: Final = Resource(
    c.GROUP, c.VERSION, c.PLURAL_DYNAMO_CHECKPOINTS, c.KIND_DYNAMO_CHECKPOINT
)
POD_SNAPSHOTS: Final = Resource(c.GROUP, c.VERSION, c.PLURAL_POD_SNAPSHOTS, c.KIND_POD_SNAPSHOT)
POD_SNAPSHOT_CONTENTS: Final = Resource(
    c.GROUP,
    c.VERSION,
    c.PLURAL_POD_SNAPSHOT_CONTENTS,
    c.KIND_POD_SNAPSHOT_CONTENT,
    namespaced=False,
)
