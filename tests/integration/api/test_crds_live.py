"""The CRDs install into a real apiserver and are served as SPEC §2 says."""

from __future__ import annotations

import json

from tests.integration.api.crds_fixture import Kubectl, install_crds


def _resource_versions(cluster: Kubectl, names: list[str]) -> dict[str, str]:
    out = cluster.kubectl("get", *(f"crd/{n}" for n in names), "-o", "json").stdout
    items = json.loads(out)["items"]
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in items}


def test_crds_are_established_and_install_is_idempotent(
    kube_cluster: Kubectl, crds: list[str]
) -> None:
    assert sorted(crds) == [
        "dynamocheckpoints.nvidia.com",
        "podsnapshotcontents.nvidia.com",
        "podsnapshots.nvidia.com",
    ]
    before = _resource_versions(kube_cluster, crds)
    assert sorted(before) == sorted(crds)
    # A second install succeeds and writes nothing: no CRD gets a new resourceVersion.
    install_crds(kube_cluster)
    assert _resource_versions(kube_cluster, crds) == before
