"""Deploying the manifests gives an operator what SPEC §2 and §7 promise: the three APIs with
their short names and printer columns, one ServiceAccount per binary, the controllers and the
agent DaemonSet."""

from __future__ import annotations

import json

from e2e.conftest import REPO, Cluster

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
