"""Two checkpoints at once on the node: both Ready, two checkpoint IDs, two complete artifacts."""

from __future__ import annotations

import json

from e2e import flow
from e2e.conftest import CAPTURE_TIMEOUT, Env
from e2e.deploy import Kubectl


def test_two_checkpoints_at_once_both_ready_with_two_artifacts(env: Env, namespace: str) -> None:
    kubectl = Kubectl(env.cluster.kubeconfig)
    names = ("twin-a", "twin-b")
    # Both created before either is looked at: their Jobs, PodSnapshots and captures overlap.
    for name in names:
        manifest = flow.checkpoint_manifest(name, env={"WORKLOAD_TOUCH_MIB": "8"})
        env.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    watches = {n: flow.wait_terminal(kubectl, namespace, n, CAPTURE_TIMEOUT) for n in names}
    for name, w in watches.items():
        assert w.phase == "Ready", (name, flow.failed_summary(w.checkpoint))
    ids = {w.status["checkpointID"] for w in watches.values()}
    assert len(ids) == 2, ids
    for w in watches.values():
        podsnap = flow.get(kubectl, "podsnap", w.status["podSnapshotName"], namespace)
        assert podsnap is not None
        content = flow.get(kubectl, "podsnapcontent", podsnap["status"]["boundSnapshotContentName"])
        assert content is not None
        node = env.node(content["spec"]["source"]["nodeName"])
        artifact = f"{env.storage_root}/{w.status['checkpointID']}/versions/1"
        manifest = json.loads(node.read(f"{artifact}/manifest.json"))
        assert manifest["checkpointID"] == w.status["checkpointID"]
        assert manifest["pod"]["name"] == podsnap["spec"]["source"]["podRef"]["name"]
