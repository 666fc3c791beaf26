"""The checkpoint ID: the name of an artifact on shared storage (SPEC §2).

Resolution order: `status.checkpointID`, else the `nvidia.com/snapshot-checkpoint-id` label,
else the identity hash. Once stamped, the ID never changes even if the hash function did.

The identity hash must equal the reference implementation's bit for bit, because artifacts
written by either are found by this name. The reference is Go: `json.Marshal` of a struct with
fields in a fixed order, some `omitempty`, map keys sorted, no whitespace, and Go's HTML-safe
string escaping (`<`, `>`, `&`, U+2028, U+2029 as `\\u00XX`). `canonical_identity_json`
reproduces exactly that byte string; the unit tests pin vectors produced by Go itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpoint, DynamoCheckpointIdentity

CHECKPOINT_ID_LENGTH: Final = 16

# Go's encoding/json escapes these even inside strings (HTML safety, JS line separators).
_GO_ESCAPES: Final = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE: Final = re.compile("[<>&\u2028\u2029]")
# Go writes invalid UTF-16 (a lone surrogate) as U+FFFD; Python would fail to encode it.
_LONE_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")


def _normalised(identity: DynamoCheckpointIdentity) -> dict[str, Any]:
    """The identity as the reference's `normalizedIdentity` struct marshals it (field order!)."""
    out: dict[str, Any] = {
        "model": identity.model,
        "backendFramework": identity.backend_framework,
    }
    if identity.dynamo_version:
        out["dynamoVersion"] = identity.dynamo_version
    # Absent and 0 both mean "unset" to the reference (a Go zero value), and unset means 1.
    out["tensorParallelSize"] = identity.tensor_parallel_size or c.DEFAULT_PARALLEL_SIZE
    out["pipelineParallelSize"] = identity.pipeline_parallel_size or c.DEFAULT_PARALLEL_SIZE
    if identity.dtype:
        out["dtype"] = identity.dtype
    if identity.max_model_len:
        out["maxModelLen"] = identity.max_model_len
    # A missing map becomes {}; with `omitempty`, {} and absent then serialise the same.
    extra = dict(identity.extra_parameters or {})
    if extra:
        out["extraParameters"] = dict(sorted(extra.items()))
    return out


def canonical_identity_json(identity: DynamoCheckpointIdentity) -> bytes:
    """The exact bytes the reference hashes for this identity."""
    text = json.dumps(_normalised(identity), ensure_ascii=False, separators=(",", ":"))
    text = _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text)
    text = _LONE_SURROGATE_RE.sub("\ufffd", text)
    return text.encode("utf-8")


def identity_hash(identity: DynamoCheckpointIdentity) -> str:
    """First 16 hex characters of SHA-256 over the canonical identity JSON."""
    return hashlib.sha256(canonical_identity_json(identity)).hexdigest()[:CHECKPOINT_ID_LENGTH]


def resolve_checkpoint_id(checkpoint: DynamoCheckpoint) -> str:
    """The checkpoint ID of a DynamoCheckpoint, in SPEC order: status, label, identity hash."""
    if checkpoint.status.checkpoint_id:
        return checkpoint.status.checkpoint_id
    labelled = checkpoint.metadata.labels.get(c.LABEL_CHECKPOINT_ID)
    if labelled:
        return labelled
    return identity_hash(checkpoint.spec.identity)
