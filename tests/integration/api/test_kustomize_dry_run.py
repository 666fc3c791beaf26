"""Every overlay passes `kubectl apply --server-side --dry-run=server -k` against the real
apiserver: schemas of every object, admission (Pod Security of the privileged agent namespace,
priority classes) and server-side apply all agree with the manifests."""

from __future__ import annotations

import pytest

from tests.integration.api.crds_fixture import REPO, Kubectl

OVERLAYS = ["manifests/default", "manifests/overlays/kind", "manifests/overlays/local"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_with_server_dry_run(
    kube_cluster: Kubectl, rbac: str, overlay: str
) -> None:
    # `rbac` made the namespace and CRDs real: a dry run cannot create a namespace and then
    # admit objects into it in the same request.
    proc = kube_cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-k", str(REPO / overlay), check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all("(server dry run)" in line for line in lines), proc.stdout
    applied = {line.split()[0] for line in lines}
    for expected in (
        "deployment.apps/dynamo-checkpoint-controller",
        "deployment.apps/dynamo-podsnapshot-controller",
        "daemonset.apps/dynamo-snapshot-agent",
        "clusterrole.rbac.authorization.k8s.io/dynamo-snapshot-agent",
        "customresourcedefinition.apiextensions.k8s.io/podsnapshotcontents.nvidia.com",
    ):
        assert expected in applied, proc.stdout
    # The local overlay's components use a loopback-only node's host network, whose addresses
    # Endpoints refuse: it has no metrics Service (overlays/local/no-metrics-service.yaml).
    has_service = "service/dynamo-snapshot-metrics" in applied
    assert has_service == (not overlay.endswith("/local")), proc.stdout


def test_dry_run_really_validates(
    kube_cluster: Kubectl, rbac: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The check above can fail: a broken object in an overlay is refused by the same command."""
    overlay = tmp_path_factory.mktemp("broken-overlay")
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "resources:\n"
        "- deployment.yaml\n"
    )
    (overlay / "deployment.yaml").write_text(
        "apiVersion: apps/v1\n"
        "kind: Deployment\n"
        "metadata: {name: broken, namespace: dynamo-snapshot-system}\n"
        "spec:\n"
        "  selector: {matchLabels: {a: b}}\n"
        "  template:\n"
        "    metadata: {labels: {a: c}}\n"  # selector does not match the template
        "    spec: {containers: [{name: c, image: x}]}\n"
    )
    proc = kube_cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-k", str(overlay), check=False
    )
    assert proc.returncode != 0
    assert "selector" in proc.stderr
