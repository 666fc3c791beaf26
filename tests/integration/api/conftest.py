"""Fixtures of the API tests: the CRDs installed once per session, and the manifests' namespace
and RBAC applied for real (the RBAC tests impersonate those ServiceAccounts)."""

from __future__ import annotations

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
    return SYSTEM_NAMESPACE
