"""The end-to-end suite runs against whatever cluster KUBECONFIG names: kind on a workstation, the
local control plane (`just up`) here. It deploys the real manifests and never starts or stops the
cluster itself. Choose the kustomize overlay with E2E_OVERLAY (default: `local`; `kind` on kind)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


class Cluster:
    def __init__(self, kubeconfig: Path, overlay: str) -> None:
        self.kubeconfig = kubeconfig
        self.overlay = REPO / "manifests" / "overlays" / overlay

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.fail("the e2e suite needs KUBECONFIG (run it with `./hack/just e2e`)")
    overlay = os.environ.get("E2E_OVERLAY", "local")
    c = Cluster(Path(kubeconfig), overlay)
    if not c.overlay.is_dir():
        pytest.fail(f"E2E_OVERLAY={overlay}: no overlay at {c.overlay}")
    return c


@pytest.fixture(scope="session")
def deployed(cluster: Cluster) -> Cluster:
    """Apply the overlay once per session, as an operator would, and wait for the CRDs."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(cluster.overlay))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/dynamocheckpoints.nvidia.com",
        "crd/podsnapshots.nvidia.com",
        "crd/podsnapshotcontents.nvidia.com",
    )
    return cluster


@pytest.fixture
def namespace(deployed: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    deployed.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        deployed.kubectl("delete", "namespace", name, "--wait=false", check=False)
