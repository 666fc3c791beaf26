"""Deploying the manifests gives an operator what SPEC §2 and §7 promise: the three APIs with
their short names and printer columns, one ServiceAccount per binary, the controllers and the
agent DaemonSet."""

from __future__ import annotations

import json

from e2e.conftest import REPO, Cluster, Env
from e2e.deploy import DAEMONSET, DEPLOYMENTS, Kubectl, agents_ready, ready_nodes
from e2e.metrics import component_pods, scrape

SYSTEM_NAMESPACE = "dynamo-snapshot-system"


def test_apis_are_served_with_short_names(deployed: Cluster) -> None:
    resources = deployed.kubectl("api-resources", "--api-group=nvidia.com", "-o", "wide")
    for kind, short in (
        ("DynamoCheckpoint", "dckpt"),
        ("PodSnapshot", "podsnap"),
        ("PodSnapshotContent", "podsnapcontent"),
    ):
        line = next(ln for ln in resources.splitlines() if f" {kind} " in f" {ln} ")
        assert short in line.split(), line


def test_workloads_and_accounts_exist(deployed: Cluster) -> None:
    objs = json.loads(
        deployed.kubectl(
            "get", "deploy,daemonset,serviceaccount", "-n", SYSTEM_NAMESPACE, "-o", "json"
        )
    )["items"]
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("DaemonSet", "dynamo-snapshot-agent") in names
    for sa in (
        "dynamo-checkpoint-controller",
        "dynamo-podsnapshot-controller",
        "dynamo-snapshot-agent",
    ):
        assert ("ServiceAccount", sa) in names
    deployments = {n for k, n in names if k == "Deployment"}
    assert len(deployments) == 2, deployments


def test_sample_checkpoint_shows_printer_columns(deployed: Cluster, namespace: str) -> None:
    sample = REPO / "manifests" / "samples" / "dynamocheckpoint.yaml"
    deployed.kubectl("apply", "-n", namespace, "-f", str(sample))
    table = deployed.kubectl("get", "dckpt", "-n", namespace)
    header = table.splitlines()[0].split()
    assert header[:1] == ["NAME"]
    for column in ("MODEL", "BACKEND", "PHASE", "CHECKPOINTID", "AGE"):
        assert column in header, header


def test_every_component_is_available_with_ready_pods(deployed: Cluster) -> None:
    """Both controller Deployments Available and an agent on every Ready node, each pod's
    containers Ready (their /readyz answered the kubelet's probe)."""
    deployments = json.loads(
        deployed.kubectl("get", "deploy", "-n", SYSTEM_NAMESPACE, "-o", "json")
    )
    for d in deployments["items"]:
        name = d["metadata"]["name"]
        available = next(c for c in d["status"]["conditions"] if c["type"] == "Available")
        assert available["status"] == "True", (name, available)
        assert d["status"].get("readyReplicas") == d["spec"]["replicas"], (name, d["status"])
    kubectl = Kubectl(deployed.kubeconfig)
    ds = kubectl.json("get", "ds", DAEMONSET, "-n", SYSTEM_NAMESPACE)
    nodes = ready_nodes(kubectl)
    agents = component_pods(deployed, DAEMONSET)
    assert nodes, "no Ready node"
    assert agents_ready(ds, agents, nodes), [
        (p["spec"].get("nodeName"), p["status"]) for p in agents
    ]
    pods = json.loads(deployed.kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-o", "json"))
    on_ready_nodes = [p for p in pods["items"] if p["spec"].get("nodeName") in nodes]
    assert len(on_ready_nodes) == 2 + len(nodes), [p["metadata"]["name"] for p in pods["items"]]
    for p in on_ready_nodes:
        ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", (p["metadata"]["name"], p["status"])
        assert all(s["ready"] for s in p["status"]["containerStatuses"]), p["status"]


def test_components_serve_metrics_on_their_bind_address(env: Env) -> None:
    """Each running component's /metrics (on its bind address, or through the apiserver's pod
    proxy where a cluster allows it) answers with controller-runtime's series."""
    nodes = ready_nodes(Kubectl(env.cluster.kubeconfig))
    pods = [p for p in component_pods(env.cluster) if p["spec"].get("nodeName") in nodes]
    names = {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods}
    assert names == {*DEPLOYMENTS, DAEMONSET}, names
    for pod in pods:
        text = scrape(env.cluster, pod)
        assert "controller_runtime_reconcile_total" in text, (pod["metadata"]["name"], text[:500])
        assert "workqueue_depth" in text
