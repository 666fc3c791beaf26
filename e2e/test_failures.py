"""What goes wrong ends Failed with a reason a person can act on (SPEC §4), never a hang, and
leaves nothing at a final path or outside the storage root."""

from __future__ import annotations

import json
import uuid

from e2e import flow
from e2e.conftest import CAPTURE_TIMEOUT, Env
from e2e.deploy import Kubectl
from e2e.support import wait_for

AGENT_SOURCE_REASONS = {"SourcePodNotFound", "SourcePodGone", "StalePodReference"}


def _create(env: Env, namespace: str, manifest: flow.Obj) -> Kubectl:
    env.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    return Kubectl(env.cluster.kubeconfig)


def test_never_ready_workload_fails_at_the_deadline_with_the_jobs_reason(
    env: Env, namespace: str
) -> None:
    # The workload never writes ready-for-snapshot: the Job's activeDeadlineSeconds ends it.
    manifest = flow.checkpoint_manifest(
        "never-ready", env={"WORKLOAD_WARMUP_TICKS": "1000000"}, deadline=15
    )
    kubectl = _create(env, namespace, manifest)
    watch = flow.wait_terminal(kubectl, namespace, "never-ready", CAPTURE_TIMEOUT)
    assert watch.phase == "Failed", watch.status
    message = watch.status.get("message", "")
    assert watch.status["jobName"] in message, message
    assert "deadline" in message, message
    # The Job's own reason is carried on the checkpoint's JobCompleted condition.
    completed = flow.condition(watch.checkpoint, "JobCompleted")
    assert completed is not None
    assert (completed["status"], completed["reason"]) == ("False", "DeadlineExceeded"), completed
    # The agent never captured it: no artifact for this checkpoint ID anywhere.
    for name in _nodes(env):
        path = f"{env.storage_root}/{watch.status['checkpointID']}/versions/1"
        assert not env.node(name).exists(path), path


def test_pod_template_without_the_target_container_fails(env: Env, namespace: str) -> None:
    manifest = flow.checkpoint_manifest("no-target", target="main", container="worker")
    kubectl = _create(env, namespace, manifest)
    watch = flow.wait_terminal(kubectl, namespace, "no-target", 60)
    assert watch.phase == "Failed", watch.status
    message = watch.status.get("message", "")
    assert "main" in message, message  # names the missing container
    # Nothing ran: no Job was created for it.
    jobs = kubectl.json("get", "jobs", "-n", namespace)["items"]
    assert jobs == [], [j["metadata"]["name"] for j in jobs]
    # The Event is sent in the background, after the Failed status the wait saw.
    wait_for(
        "a Warning Event on the checkpoint",
        lambda: (
            True
            if any(
                e["type"] == "Warning"
                for e in flow.events_of(kubectl, namespace, "DynamoCheckpoint", "no-target")
            )
            else None
        ),
        timeout=60,
    )


def test_source_pod_deleted_mid_flow_fails_with_a_reason(env: Env, namespace: str) -> None:
    # Never ready, long deadline: the flow waits at the capture step until the pod goes.
    manifest = flow.checkpoint_manifest(
        "pod-deleted", env={"WORKLOAD_WARMUP_TICKS": "1000000"}, deadline=600
    )
    kubectl = _create(env, namespace, manifest)
    podsnap = wait_for(
        "the PodSnapshot to be bound to its content",
        lambda: _bound_podsnapshot(kubectl, namespace, "pod-deleted"),
        timeout=CAPTURE_TIMEOUT,
    )
    pod_name = podsnap["spec"]["source"]["podRef"]["name"]
    env.cluster.kubectl("delete", "pod", pod_name, "-n", namespace, "--wait=false")
    watch = flow.wait_terminal(kubectl, namespace, "pod-deleted", CAPTURE_TIMEOUT)
    assert watch.phase == "Failed", watch.status
    message = watch.status.get("message", "")
    assert message, watch.status
    # Whichever saw it first names the cause: the Job (its only pod is gone, backoffLimit 0) or
    # the agent's gate (the source pod is gone or being deleted).
    podsnap_after = flow.get(kubectl, "podsnap", podsnap["metadata"]["name"], namespace)
    failed = flow.condition(podsnap_after, "Failed")
    if failed is not None and failed["status"] == "True":
        assert failed["reason"] in AGENT_SOURCE_REASONS, failed
        assert pod_name in failed["message"], failed
    else:
        assert watch.status["jobName"] in message, message


def test_hostile_storage_base_path_is_invalid_destination(env: Env, namespace: str) -> None:
    escape = f"{env.storage_root}/../e2e-escape-{uuid.uuid4().hex[:8]}"
    manifest = flow.checkpoint_manifest(
        "hostile-path", pod_annotations={flow.STORAGE_BASE_PATH: escape}
    )
    kubectl = _create(env, namespace, manifest)
    watch = flow.wait_terminal(kubectl, namespace, "hostile-path", CAPTURE_TIMEOUT)
    assert watch.phase == "Failed", watch.status
    podsnap = flow.get(kubectl, "podsnap", watch.status["podSnapshotName"], namespace)
    assert podsnap is not None
    failed = flow.condition(podsnap, "Failed")
    assert failed is not None, podsnap
    assert (failed["status"], failed["reason"]) == ("True", "InvalidDestination"), failed
    content = flow.get(kubectl, "podsnapcontent", podsnap["status"]["boundSnapshotContentName"])
    assert content is not None
    content_failed = flow.condition(content, "Failed")
    assert content_failed is not None
    assert content_failed["reason"] == "InvalidDestination"
    node = env.node(content["spec"]["source"]["nodeName"])
    assert not node.exists(escape), f"{escape} was created on {node.name}"
    assert not node.exists(f"{env.storage_root}/{watch.status['checkpointID']}/versions/1")


def _nodes(env: Env) -> list[str]:
    items = json.loads(env.cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    return [n["metadata"]["name"] for n in items]


def _bound_podsnapshot(kubectl: Kubectl, namespace: str, name: str) -> flow.Obj | None:
    obj = flow.get(kubectl, "dckpt", name, namespace)
    ps_name = (obj or {}).get("status", {}).get("podSnapshotName")
    if not ps_name:
        return None
    ps = flow.get(kubectl, "podsnap", ps_name, namespace)
    if ps is None or not ps.get("status", {}).get("boundSnapshotContentName"):
        return None
    return ps
