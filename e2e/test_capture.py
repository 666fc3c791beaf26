"""The happy path of SPEC §1 on a real cluster: a DynamoCheckpoint whose Job runs the workload image
becomes Ready with a checkpoint ID; its PodSnapshot and content are Ready (reason Captured); the
agent on the Job pod's node wrote a complete, verified artifact; the Job completed and was deleted;
every transition left an Event; the agent's /metrics counted the capture."""

from __future__ import annotations

import json
import re

from e2e import flow
from e2e.conftest import Captured, Env
from e2e.deploy import DAEMONSET, Kubectl
from e2e.metrics import component_pods, sample_value, scrape
from e2e.support import wait_for


def test_checkpoint_becomes_ready_with_a_checkpoint_id(captured: Captured) -> None:
    status = captured.watch.status
    assert captured.watch.phase == "Ready"
    assert re.fullmatch(r"[0-9a-f]{16}", captured.checkpoint_id), captured.checkpoint_id
    assert status.get("createdAt"), status
    labels = captured.watch.checkpoint["metadata"].get("labels", {})
    assert labels.get("nvidia.com/snapshot-checkpoint-id") == captured.checkpoint_id
    # The phases a user watching it sees, in SPEC order (a fast poll may miss Pending).
    seen = [p for p in captured.watch.phases if p != "(no phase)"]
    assert seen[-1] == "Ready", seen
    assert "Creating" in seen, seen
    assert seen.index("Creating") < seen.index("Ready"), seen
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    assert conditions.get("JobCreated") == "True", status
    assert conditions.get("JobCompleted") == "True", status


def test_podsnapshot_and_content_are_ready_captured(env: Env, captured: Captured) -> None:
    kubectl = Kubectl(env.cluster.kubeconfig)
    podsnap = flow.get(
        kubectl, "podsnap", captured.watch.status["podSnapshotName"], captured.namespace
    )
    assert podsnap is not None
    ready = flow.condition(podsnap, "Ready")
    assert ready is not None, podsnap["status"]
    assert ready["status"] == "True", podsnap["status"]
    assert ready["reason"] == "Captured", ready
    owner = podsnap["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("DynamoCheckpoint", captured.name)

    content = flow.get(kubectl, "podsnapcontent", podsnap["status"]["boundSnapshotContentName"])
    assert content is not None
    assert content["metadata"]["name"] == f"podsnapshotcontent-{podsnap['metadata']['uid']}"
    ready = flow.condition(content, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "Captured")
    ref = content["spec"]["snapshotRef"]
    assert (ref["namespace"], ref["name"], ref["uid"]) == (
        captured.namespace,
        podsnap["metadata"]["name"],
        podsnap["metadata"]["uid"],
    )
    node = content["spec"]["source"]["nodeName"]
    assert content["metadata"]["labels"]["nvidia.com/snapshot-node"] == node


def test_artifact_on_the_node_matches_its_manifest(captured: Captured) -> None:
    node, artifact = captured.node, captured.artifact
    assert node.exists(artifact), f"no artifact at {artifact} on {node.name}"
    manifest = json.loads(node.read(f"{artifact}/manifest.json"))
    assert manifest["checkpointID"] == captured.checkpoint_id
    assert manifest["artifactVersion"] == "1"
    assert manifest["method"] in ("cri", "criu"), manifest["method"]
    assert manifest["node"]["name"] == node.name
    assert manifest["pod"]["namespace"] == captured.namespace
    assert manifest["container"]["name"] == "main"
    # Every file listed, with its size and the SHA-256 re-read on the node; nothing unlisted.
    listed = {f["path"]: f for f in manifest["files"]}
    assert listed, manifest
    on_disk = {p.removeprefix(artifact + "/") for p in node.find(artifact)}
    files = {
        p for p in on_disk if node.run("test", "-f", f"{artifact}/{p}", check=False).returncode == 0
    }
    assert files - {"manifest.json"} == set(listed), (sorted(files), sorted(listed))
    for path, f in listed.items():
        assert node.sha256(f"{artifact}/{path}") == f["sha256"], path
    assert manifest["totalBytes"] == sum(f["size"] for f in listed.values())
    assert {"dump"} <= set(manifest["phases"]), manifest["phases"]
    # A checkpoint holds process memory: owner-only, every file and directory.
    assert node.mode(artifact) == 0o700
    for p in files:
        assert node.mode(f"{artifact}/{p}") == 0o600, p
    # Nothing half-written is left in staging.
    staging = f"{artifact.rsplit('/', 1)[0]}/tmp"
    assert not node.exists(staging) or node.find(staging) == [], node.find(staging)


def test_job_completed_and_was_deleted(env: Env, captured: Captured) -> None:
    kubectl = Kubectl(env.cluster.kubeconfig)
    assert captured.job_name.startswith(f"checkpoint-job-{captured.checkpoint_id}-")
    wait_for(
        f"Job {captured.job_name} to be deleted",
        lambda: (
            True
            if flow.get(kubectl, "job", captured.job_name, captured.namespace) is None
            else None
        ),
        timeout=60,
    )
    # The Job reported Complete before it went: JobCompleted on the checkpoint says so, and so
    # does what the watch saw of the Job when the poll caught it.
    completed = flow.condition(captured.watch.checkpoint, "JobCompleted")
    assert completed is not None
    assert completed["status"] == "True"
    assert "Failed" not in captured.watch.job_conditions, captured.watch.job_conditions


def test_every_transition_left_an_event(env: Env, captured: Captured) -> None:
    kubectl = Kubectl(env.cluster.kubeconfig)

    def all_sent() -> list[flow.Obj] | None:
        # The controllers send Events in the background, after the status write the capture
        # fixture waited for: the last of them may still be on its way.
        found = flow.events_of(kubectl, captured.namespace, "DynamoCheckpoint", captured.name)
        joined = " ".join(f"{e['reason']}: {e['message']}" for e in found)
        return found if captured.job_name in joined and "Ready" in joined else None

    def reasons_so_far() -> str:
        found = flow.events_of(kubectl, captured.namespace, "DynamoCheckpoint", captured.name)
        return ", ".join(e["reason"] for e in found)

    events = wait_for("the checkpoint's Events", all_sent, timeout=60, progress=reasons_so_far)
    text = [f"{e['type']} {e['reason']}: {e['message']}" for e in events]
    assert all(e["type"] == "Normal" for e in events), text
    reasons = [e["reason"] for e in events]
    assert len(set(reasons)) >= 3, text  # Job created, PodSnapshot created, Ready at least
    podsnap_events = flow.events_of(
        kubectl, captured.namespace, "PodSnapshot", captured.watch.status["podSnapshotName"]
    )
    assert podsnap_events, "no Event on the PodSnapshot"


def test_agent_metrics_hold_the_capture_latency(env: Env, captured: Captured) -> None:
    (agent,) = [
        p
        for p in component_pods(env.cluster, DAEMONSET)
        if p["spec"]["nodeName"] == captured.node.name
    ]
    text = scrape(env.cluster, agent)
    count = sample_value(text, "dynamo_snapshot_capture_duration_seconds_count", result="success")
    total = sample_value(text, "dynamo_snapshot_capture_duration_seconds_sum", result="success")
    assert count >= 1, text[-3000:]
    assert total > 0
    dump = sample_value(text, "dynamo_snapshot_capture_phase_duration_seconds_count", phase="dump")
    assert dump >= 1
    assert sample_value(text, "dynamo_snapshot_capture_bytes_written_total") > 0
