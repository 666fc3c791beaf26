"""Install the project's CRDs into a test cluster: reusable by every integration test package.

    from tests.integration.api.crds_fixture import install_crds
    install_crds(kube_cluster)

Server-side apply of the generated YAML (manifests/crds/), then a wait until each CRD is
Established, so a test may create objects right after the call. Idempotent: applying the same
definitions again is a no-op, and a changed definition is updated in place.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from dynamo_snapshot.api.crds import crds

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "manifests" / "crds"
FIELD_MANAGER = "dynamo-snapshot-tests"


class Kubectl(Protocol):
    """What install_crds needs of the `kube_cluster` fixture."""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def crd_names() -> list[str]:
    return [crd["metadata"]["name"] for crd in crds().values()]


def install_crds(cluster: Kubectl, timeout_s: int = 60) -> list[str]:
    """Apply the three CRDs and wait until they are Established; return their names."""
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-k",
        str(CRD_DIR),
    )
    names = crd_names()
    # `kubectl wait` polls the condition with a deadline; it returns as soon as all are met.
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={timeout_s}s",
        *(f"crd/{name}" for name in names),
    )
    return names
