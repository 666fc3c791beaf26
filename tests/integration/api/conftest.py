"""Fixtures of the API tests: the CRDs installed once per session, and the manifests' namespace
and RBAC applied for real (the RBAC tests impersonate those ServiceAccounts)."""

from __future__ import annotations

import time

import pytest

from tests.integration.api.crds_fixture import REPO, Kubectl, install_crds

SYSTEM_NAMESPACE = "dynamo-snapshot-system"


@pytest.fixture(scope="session")
def crds(kube_cluster: Kubectl) -> list[str]:
    return install_crds(kube_cluster)


@pytest.fixture(scope="session")
def rbac(kube_cluster: Kubectl, crds: list[str]) -> str:
    """The namespace, ServiceAccounts and roles of manifests/, applied; returns the namespace."""
    for part in ("namespace", "rbac"):
        kube_cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests" / part)
        )
    _wait_until_authorized(kube_cluster)
    return SYSTEM_NAMESPACE


# One grant out of each ClusterRole+ClusterRoleBinding and Role+RoleBinding of manifests/rbac.
_PROBES = [
    ("dynamo-snapshot-agent", "patch", "pods", "default"),
    ("dynamo-checkpoint-controller", "create", "jobs.batch", "default"),
    ("dynamo-podsnapshot-controller", "create", "podsnapshotcontents.nvidia.com", "default"),
    ("dynamo-checkpoint-controller", "update", "leases.coordination.k8s.io", SYSTEM_NAMESPACE),
    ("dynamo-podsnapshot-controller", "update", "leases.coordination.k8s.io", SYSTEM_NAMESPACE),
]


def _wait_until_authorized(kube_cluster: Kubectl, timeout: float = 60.0) -> None:
    """The apiserver's RBAC authorizer reads roles and bindings from its own informers: a grant
    just applied is not in force at once. Wait until each binding is, so the first test does
    not read a grant that is merely late as a grant that is missing."""
    deadline = time.monotonic() + timeout
    pending = list(_PROBES)
    while pending:
        pending = [
            (sa, verb, resource, ns)
            for sa, verb, resource, ns in pending
            if kube_cluster.kubectl(
                "auth", "can-i", verb, resource, "-n", ns,
                as_user=f"system:serviceaccount:{SYSTEM_NAMESPACE}:{sa}",
                check=False,
            ).returncode != 0
        ]  # fmt: skip
        if pending and time.monotonic() > deadline:
            pytest.fail(f"RBAC of manifests/rbac not in force after {timeout:g} s: {pending}")
        if pending:
            time.sleep(0.2)
