"""The checkpoint Job of a DynamoCheckpoint, built from its pod template (SPEC §3, §4.1 step 2).

A pure function of the DynamoCheckpoint and its checkpoint ID, so the whole shape is unit-tested
without a cluster. What the user's template gets, and why:

- labels `snapshot-owner`, `snapshot-is-checkpoint-source=true`, `snapshot-checkpoint-id` on the
  pod (the agent and the controller find the pod by them) and owner + ID on the Job;
- the artifact version annotation, and sidecar injection switched off (an injected proxy is a
  second process tree with sockets a dump cannot carry);
- `restartPolicy: Never`, `backoffLimit: 0`, the deadline: a retried pod would be another
  process, and a capture that did not happen in time will not happen;
- the control volume (`emptyDir`, mounted at `/snapshot-control` with the container's name as
  subPath) and its env in both names, the user's own values winning;
- the readiness probe replaced by "the workload wrote `ready-for-snapshot`", liveness and startup
  probes dropped (a paused workload must not be restarted), so "container Ready" means "safe to
  dump";
- `/dev/shm` as a memory `emptyDir` of the requested size (8Gi by default, none when disabled);
- the io_uring-blocking seccomp profile as the pod's localhost profile unless the user set one.

A template without the target container cannot be captured: `JobShapeError` names it.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpoint
from dynamo_snapshot.api.schema import DNS_LABEL_MAX, is_dns_label
from dynamo_snapshot.runtime import set_controller_reference

JSON = dict[str, Any]

READINESS_PERIOD_SECONDS: Final = 1


class JobShapeError(ValueError):
    """The DynamoCheckpoint cannot be turned into a checkpoint Job; the message says why and
    `reason` is the condition reason to fail with."""

    def __init__(self, message: str, reason: str = c.REASON_INVALID_POD_TEMPLATE) -> None:
        super().__init__(message)
        self.reason = reason


def job_name(checkpoint_id: str, artifact_version: str) -> str:
    """`checkpoint-job-<id>-<artifactVersion>` (SPEC §4.1 step 2)."""
    return f"{c.CHECKPOINT_JOB_NAME_PREFIX}{checkpoint_id}-{artifact_version}"


def validate_job_name(name: str) -> None:
    """The name also becomes the pods' `batch.kubernetes.io/job-name` label: a DNS label."""
    if not is_dns_label(name):
        raise JobShapeError(
            f"Job name {name!r} (from the checkpoint ID and the artifact version) is not a "
            f"DNS-1123 label of at most {DNS_LABEL_MAX} characters",
            c.REASON_INVALID_CHECKPOINT_ID,
        )


def _set_env_default(container: JSON, name: str, value: str) -> None:
    env: list[JSON] = container.setdefault("env", [])
    if not any(e.get("name") == name for e in env):
        env.append({"name": name, "value": value})


def _shape_target(container: JSON, shm_size: str | int | None) -> None:
    mounts: list[JSON] = container.setdefault("volumeMounts", [])
    if not any(m.get("mountPath") == c.CONTROL_MOUNT_PATH for m in mounts):
        mounts.append(
            {
                "name": c.CONTROL_VOLUME_NAME,
                "mountPath": c.CONTROL_MOUNT_PATH,
                # One control directory per container, so a sibling's files are never seen.
                "subPath": container["name"],
            }
        )
    if shm_size is not None and not any(
        m.get("mountPath") == c.SHARED_MEMORY_MOUNT_PATH for m in mounts
    ):
        mounts.append(
            {"name": c.SHARED_MEMORY_VOLUME_NAME, "mountPath": c.SHARED_MEMORY_MOUNT_PATH}
        )
    # User-set values win: a workload may read its control directory elsewhere.
    _set_env_default(container, c.CONTROL_DIR_ENV, c.CONTROL_MOUNT_PATH)
    _set_env_default(container, c.LEGACY_CONTROL_DIR_ENV, c.CONTROL_MOUNT_PATH)
    container["readinessProbe"] = {
        "exec": {"command": ["cat", f"{c.CONTROL_MOUNT_PATH}/{c.READY_FOR_SNAPSHOT_FILE}"]},
        "periodSeconds": READINESS_PERIOD_SECONDS,
        "failureThreshold": 1,
        "successThreshold": 1,
    }
    container.pop("livenessProbe", None)
    container.pop("startupProbe", None)


def build_job(
    checkpoint: DynamoCheckpoint,
    checkpoint_id: str,
    *,
    seccomp_profile: str | None = c.SECCOMP_LOCALHOST_PROFILE,
) -> JSON:
    """The Job object to create (a JSON dict); raises `JobShapeError` naming the problem.

    `seccomp_profile` is the localhost profile the pod runs under (None: leave the pod's own).
    """
    name = job_name(checkpoint_id, checkpoint.artifact_version)
    validate_job_name(name)
    spec = checkpoint.spec.job
    target = spec.target_container_name_or_default
    template: JSON = copy.deepcopy(dict(spec.pod_template_spec))
    pod_meta: JSON = template.setdefault("metadata", {})
    pod: JSON = template.setdefault("spec", {})
    containers: list[JSON] = pod.get("containers") or []
    found = [ctr for ctr in containers if ctr.get("name") == target]
    if not found:
        names = ", ".join(str(ctr.get("name")) for ctr in containers) or "none"
        raise JobShapeError(
            f"the pod template has no container named {target!r} (spec.job.targetContainerName);"
            f" its containers: {names}"
        )
    owner = checkpoint.metadata.name or ""
    pod_meta["labels"] = {
        **(pod_meta.get("labels") or {}),
        c.LABEL_SNAPSHOT_OWNER: owner,
        c.LABEL_IS_CHECKPOINT_SOURCE: c.LABEL_TRUE,
        c.LABEL_CHECKPOINT_ID: checkpoint_id,
    }
    pod_meta["annotations"] = {
        **(pod_meta.get("annotations") or {}),
        c.ANNOTATION_ARTIFACT_VERSION: checkpoint.artifact_version,
        c.ANNOTATION_ISTIO_INJECT: "false",
        c.ANNOTATION_LINKERD_INJECT: "disabled",
    }
    pod["restartPolicy"] = "Never"
    shm_size = spec.shared_memory_size
    volumes: list[JSON] = pod.setdefault("volumes", [])
    if not any(v.get("name") == c.CONTROL_VOLUME_NAME for v in volumes):
        volumes.append({"name": c.CONTROL_VOLUME_NAME, "emptyDir": {}})
    if shm_size is not None and not any(
        v.get("name") == c.SHARED_MEMORY_VOLUME_NAME for v in volumes
    ):
        volumes.append(
            {
                "name": c.SHARED_MEMORY_VOLUME_NAME,
                "emptyDir": {"medium": "Memory", "sizeLimit": shm_size},
            }
        )
    _shape_target(found[0], shm_size)
    if seccomp_profile:
        security: JSON = pod.setdefault("securityContext", {})
        security.setdefault(
            "seccompProfile", {"type": "Localhost", "localhostProfile": seccomp_profile}
        )
    job: JSON = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": checkpoint.metadata.namespace,
            "labels": {c.LABEL_SNAPSHOT_OWNER: owner, c.LABEL_CHECKPOINT_ID: checkpoint_id},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.active_deadline_seconds_or_default,
            "template": template,
        },
    }
    # Garbage collection deletes the Job with its DynamoCheckpoint; owns() maps its events back.
    return set_controller_reference(checkpoint.to_dict(), job)
