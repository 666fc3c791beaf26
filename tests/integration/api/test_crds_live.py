"""The CRDs install into a real apiserver and are served as SPEC §2 says."""

from __future__ import annotations

from tests.integration.api.crds_fixture import Kubectl, install_crds


def test_crds_are_established_and_install_is_idempotent(
    kube_cluster: Kubectl, crds: list[str]
) -> None:
    assert sorted(crds) == [
        "dynamocheckpoints.nvidia.com",
        "podsnapshotcontents.nvidia.com",
        "podsnapshots.nvidia.com",
    ]
    # A second install changes nothing and still succeeds.
    assert install_crds(kube_cluster) == crds
