"""Every name of the contract (SPEC §2, §3, §4) as a constant.

The strings here are read by other programs (kubectl, the node agent, workloads, dashboards), so
they are spelled exactly as the specification spells them. Code elsewhere imports these names
instead of repeating a literal: a typo then fails at import time, not in a cluster.
"""

from __future__ import annotations

from typing import Final

# --- API group and kinds (SPEC §2) -----------------------------------------------------------

GROUP: Final = "nvidia.com"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

KIND_DYNAMO_CHECKPOINT: Final = "DynamoCheckpoint"
KIND_POD_SNAPSHOT: Final = "PodSnapshot"
KIND_POD_SNAPSHOT_CONTENT: Final = "PodSnapshotContent"

PLURAL_DYNAMO_CHECKPOINTS: Final = "dynamocheckpoints"
PLURAL_POD_SNAPSHOTS: Final = "podsnapshots"
PLURAL_POD_SNAPSHOT_CONTENTS: Final = "podsnapshotcontents"

SHORT_NAME_DYNAMO_CHECKPOINT: Final = "dckpt"
SHORT_NAME_POD_SNAPSHOT: Final = "podsnap"
SHORT_NAME_POD_SNAPSHOT_CONTENT: Final = "podsnapcontent"

# --- Labels and annotations (SPEC §3) --------------------------------------------------------

LABEL_SNAPSHOT_OWNER: Final = "nvidia.com/snapshot-owner"
LABEL_IS_CHECKPOINT_SOURCE: Final = "nvidia.com/snapshot-is-checkpoint-source"
LABEL_CHECKPOINT_ID: Final = "nvidia.com/snapshot-checkpoint-id"
LABEL_SNAPSHOT_NODE: Final = "nvidia.com/snapshot-node"
LABEL_CAPTURE_ELIGIBLE: Final = "nvidia.com/snapshot-capture-eligible"
ANNOTATION_ARTIFACT_VERSION: Final = "nvidia.com/snapshot-artifact-version"
ANNOTATION_STORAGE_BASE_PATH: Final = "nvidia.com/snapshot-storage-base-path"

DEFAULT_ARTIFACT_VERSION: Final = "1"
# Label values that mean "yes" for the boolean labels above.
LABEL_TRUE: Final = "true"

# The Job controller's own label on a Job's pods (SPEC §4.1 step 3).
LABEL_JOB_NAME: Final = "batch.kubernetes.io/job-name"

# Sidecar injection is switched off on checkpoint pods (SPEC §4.1 step 2): an injected proxy
# would be a second process tree with sockets the dump cannot carry over.
ANNOTATION_ISTIO_INJECT: Final = "sidecar.istio.io/inject"
ANNOTATION_LINKERD_INJECT: Final = "linkerd.io/inject"

# --- Finalizer (SPEC §2) ---------------------------------------------------------------------

FINALIZER_CONTENT_CLEANUP: Final = "nvidia.com/podsnapshotcontent-cleanup"

# --- Object names (SPEC §2, §4) --------------------------------------------------------------

POD_SNAPSHOT_CONTENT_NAME_PREFIX: Final = "podsnapshotcontent-"
CHECKPOINT_JOB_NAME_PREFIX: Final = "checkpoint-job-"
CHECKPOINT_LEASE_NAME_PREFIX: Final = "checkpoint-lease-"
LEASE_HOLDER_PREFIX: Final = "snapshot-agent/"

# --- Workload contract: the control volume (SPEC §3) -----------------------------------------

CONTROL_VOLUME_NAME: Final = "snapshot-control"
CONTROL_MOUNT_PATH: Final = "/snapshot-control"
CONTROL_DIR_ENV: Final = "SNAPSHOT_CONTROL_DIR"
# The name upstream's workloads read; both are set, a value the user wrote wins.
LEGACY_CONTROL_DIR_ENV: Final = "DYN_SNAPSHOT_CONTROL_DIR"
READY_FOR_SNAPSHOT_FILE: Final = "ready-for-snapshot"
SNAPSHOT_COMPLETE_FILE: Final = "snapshot-complete"

# The seccomp profile the agent's init container installs under the kubelet's seccomp root
# (SPEC §7). Checkpoint Job pods name it as their `localhost` profile: it blocks io_uring,
# which CRIU cannot dump.
SECCOMP_LOCALHOST_PROFILE: Final = "dynamo-snapshot/block-io-uring.json"

# --- Condition types (SPEC §2) ---------------------------------------------------------------

CONDITION_READY: Final = "Ready"
CONDITION_FAILED: Final = "Failed"
CONDITION_JOB_CREATED: Final = "JobCreated"
CONDITION_JOB_COMPLETED: Final = "JobCompleted"

# --- DynamoCheckpoint phases and backends (SPEC §2) ------------------------------------------

PHASE_PENDING: Final = "Pending"
PHASE_CREATING: Final = "Creating"
PHASE_READY: Final = "Ready"
PHASE_FAILED: Final = "Failed"
PHASES: Final = (PHASE_PENDING, PHASE_CREATING, PHASE_READY, PHASE_FAILED)
TERMINAL_PHASES: Final = (PHASE_READY, PHASE_FAILED)

BACKEND_VLLM: Final = "vllm"
BACKEND_SGLANG: Final = "sglang"
BACKEND_TRTLLM: Final = "trtllm"
BACKEND_FRAMEWORKS: Final = (BACKEND_VLLM, BACKEND_SGLANG, BACKEND_TRTLLM)

DEFAULT_TARGET_CONTAINER_NAME: Final = "main"
DEFAULT_ACTIVE_DEADLINE_SECONDS: Final = 3600
DEFAULT_PARALLEL_SIZE: Final = 1
# Upstream's default /dev/shm for every Dynamo component.
DEFAULT_SHARED_MEMORY_SIZE: Final = "8Gi"
SHARED_MEMORY_VOLUME_NAME: Final = "shared-memory"
SHARED_MEMORY_MOUNT_PATH: Final = "/dev/shm"

# --- Condition reasons -----------------------------------------------------------------------

# Written by the node agent on PodSnapshotContent (SPEC §4.3) and mirrored onto PodSnapshot.
REASON_CAPTURED: Final = "Captured"
REASON_SOURCE_POD_NOT_FOUND: Final = "SourcePodNotFound"
REASON_STALE_POD_REFERENCE: Final = "StalePodReference"
REASON_SOURCE_POD_GONE: Final = "SourcePodGone"
REASON_MISSING_CHECKPOINT_ID: Final = "MissingCheckpointID"
REASON_INVALID_CHECKPOINT_ID: Final = "InvalidCheckpointID"
REASON_CHECKPOINT_CONTAINER_FAILED: Final = "CheckpointContainerFailed"
REASON_INVALID_TARGET_CONTAINER: Final = "InvalidTargetContainer"
REASON_CONTAINER_NOT_RESOLVED: Final = "ContainerNotResolved"
REASON_INVALID_DESTINATION: Final = "InvalidDestination"
REASON_CONTAINER_CHANGED: Final = "ContainerChanged"
REASON_CHECKPOINT_FAILED: Final = "CheckpointFailed"
REASON_LEASE_CANCELLED: Final = "LeaseCancelled"

AGENT_FAILURE_REASONS: Final = (
    REASON_SOURCE_POD_NOT_FOUND,
    REASON_STALE_POD_REFERENCE,
    REASON_SOURCE_POD_GONE,
    REASON_MISSING_CHECKPOINT_ID,
    REASON_INVALID_CHECKPOINT_ID,
    REASON_CHECKPOINT_CONTAINER_FAILED,
    REASON_INVALID_TARGET_CONTAINER,
    REASON_CONTAINER_NOT_RESOLVED,
    REASON_INVALID_DESTINATION,
    REASON_CONTAINER_CHANGED,
    REASON_CHECKPOINT_FAILED,
    REASON_LEASE_CANCELLED,
)

# Written by the PodSnapshot controller (SPEC §4.2).
REASON_CONTENT_CONFLICT: Final = "ContentConflict"
REASON_PENDING: Final = "Pending"
MESSAGE_WAITING_FOR_AGENT: Final = "Waiting for node agent to capture the checkpoint"

# Written by the checkpoint controller on DynamoCheckpoint conditions (JobCreated,
# JobCompleted) and as Event reasons (SPEC §4.1). A Failed phase always carries one of the
# failure reasons on a condition and the cause, naming the object, in `status.message`.
REASON_JOB_CREATED: Final = "JobCreated"
REASON_JOB_RUNNING: Final = "JobRunning"
REASON_JOB_COMPLETE: Final = "JobComplete"
REASON_JOB_FAILED: Final = "JobFailed"
REASON_JOB_DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
REASON_JOB_DELETED: Final = "JobDeleted"
REASON_JOB_CONFLICT: Final = "JobConflict"
REASON_INVALID_POD_TEMPLATE: Final = "InvalidPodTemplate"
REASON_DUPLICATE_CHECKPOINT_ID: Final = "DuplicateCheckpointID"
REASON_POD_SNAPSHOT_CREATED: Final = "PodSnapshotCreated"
REASON_POD_SNAPSHOT_FAILED: Final = "PodSnapshotFailed"
REASON_POD_SNAPSHOT_CONFLICT: Final = "PodSnapshotConflict"
REASON_CHECKPOINT_READY: Final = "CheckpointReady"
REASON_ARTIFACT_VERSION_CHANGED: Final = "ArtifactVersionChanged"
REASON_DEPRECATED_FIELD_IGNORED: Final = "DeprecatedFieldIgnored"
REASON_JOB_DELETED_AFTER_TERMINAL: Final = "JobCleanedUp"

# Event reasons of the PodSnapshot controller.
REASON_CONTENT_CREATED: Final = "ContentCreated"
REASON_CONTENT_BOUND: Final = "ContentBound"
REASON_CONTENT_DELETED: Final = "ContentDeleted"
REASON_SOURCE_POD_NOT_SCHEDULED: Final = "SourcePodNotScheduled"
REASON_ORPHAN_CONTENT_DELETED: Final = "OrphanContentDeleted"

# The Job controller's condition types and the reason it gives a deadline failure.
JOB_CONDITION_COMPLETE: Final = "Complete"
JOB_CONDITION_FAILED: Final = "Failed"
JOB_CONDITION_FAILURE_TARGET: Final = "FailureTarget"
JOB_REASON_DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
