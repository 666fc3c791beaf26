"""The end-to-end suite runs against whatever cluster KUBECONFIG names: kind on a workstation
(`just e2e-kind`), the local cluster with its kubelet node here (`just e2e`, hack/run-tests.sh).
It deploys the real manifests once per session through e2e/deploy.py, exactly as `just deploy`
does, and never starts or stops the cluster itself. The overlay is E2E_OVERLAY (default `local`;
`kind` on kind).

Files on the node (artifacts, the restore check) are read with commands run on the node: directly
on the local cluster, whose node is this machine, or through E2E_NODE_EXEC (`docker exec -i
{node}` on kind)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import deploy, flow

REPO = Path(__file__).resolve().parent.parent
# A small workload captures in seconds; the rest is the Job starting and ending (about 10 s here).
CAPTURE_TIMEOUT = 180.0


class Cluster:
    def __init__(self, kubeconfig: Path, overlay: str) -> None:
        self.kubeconfig = kubeconfig
        self.overlay_name = overlay
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


@dataclass(frozen=True)
class NodeShell:
    """Runs commands on the node that ran the capture."""

    name: str
    prefix: tuple[str, ...]  # () on the local cluster: the node is this machine

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([*self.prefix, *argv], capture_output=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"on node {self.name}: {' '.join(argv)} failed: {proc.stderr.decode()[-2000:]}"
            )
        return proc

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def is_file(self, path: str) -> bool:
        return self.run("test", "-f", path, check=False).returncode == 0

    def read(self, path: str) -> bytes:
        return self.run("cat", path).stdout

    def sha256(self, path: str) -> str:
        return self.run("sha256sum", path).stdout.decode().split()[0]

    def mode(self, path: str) -> int:
        return int(self.run("stat", "-c", "%a", path).stdout.decode().strip(), 8)

    def find(self, path: str) -> list[str]:
        out = self.run("find", path, "-mindepth", "1").stdout.decode()
        return sorted(out.splitlines())


@dataclass(frozen=True)
class Env:
    """The deployed system: the cluster, where it deployed, and the node's storage root."""

    cluster: Cluster
    deployed: deploy.Deployed
    storage_root: str

    def node(self, name: str) -> NodeShell:
        template = os.environ.get("E2E_NODE_EXEC")
        if template:
            return NodeShell(name, tuple(shlex.split(template.format(node=name))))
        return NodeShell(name, ())


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
def env(cluster: Cluster) -> Env:
    """Deploy once per session as `just deploy` does, waiting until everything is Ready."""
    try:
        deployed = deploy.up(cluster.kubeconfig, cluster.overlay_name)
    except deploy.DeployError as e:
        pytest.fail(f"deploy failed: {e}")
    storage_root = "/var/lib/dynamo-snapshot/checkpoints"
    if deployed.node is not None:
        storage_root = str(deployed.node.checkpoints)
    return Env(cluster, deployed, storage_root)


@pytest.fixture(scope="session")
def deployed(env: Env) -> Cluster:
    return env.cluster


@pytest.fixture
def namespace(deployed: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    deployed.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        deployed.kubectl("delete", "namespace", name, "--wait=false", check=False)


@dataclass(frozen=True)
class Captured:
    """One checkpoint taken through the whole flow at the start of the session (the happy path),
    with what was seen on the way; several tests read it."""

    namespace: str
    name: str
    watch: flow.Watch
    checkpoint_id: str
    node: NodeShell
    artifact: str  # the artifact directory on the node
    job_name: str


def capture(e2e: Env, namespace: str, name: str, **kwargs: object) -> Captured:
    env = e2e
    kubectl = deploy.Kubectl(env.cluster.kubeconfig)
    manifest = flow.checkpoint_manifest(name, **kwargs)  # type: ignore[arg-type]
    env.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    print(f"\n    waiting for DynamoCheckpoint {namespace}/{name} to become Ready")
    watch = flow.wait_terminal(kubectl, namespace, name, CAPTURE_TIMEOUT)
    assert watch.phase == "Ready", (
        f"{namespace}/{name} {watch.phase}: {flow.failed_summary(watch.checkpoint)}"
    )
    status = watch.status
    podsnap = flow.get(kubectl, "podsnap", status["podSnapshotName"], namespace)
    assert podsnap is not None
    content = flow.get(kubectl, "podsnapcontent", podsnap["status"]["boundSnapshotContentName"])
    assert content is not None
    version = manifest["metadata"]["annotations"][flow.ARTIFACT_VERSION]
    return Captured(
        namespace=namespace,
        name=name,
        watch=watch,
        checkpoint_id=status["checkpointID"],
        node=env.node(content["spec"]["source"]["nodeName"]),
        artifact=f"{env.storage_root}/{status['checkpointID']}/versions/{version}",
        job_name=status["jobName"],
    )


@pytest.fixture(scope="session")
def captured(env: Env) -> Iterator[Captured]:
    ns = f"e2e-capture-{uuid.uuid4().hex[:6]}"
    env.cluster.kubectl("create", "namespace", ns)
    try:
        yield capture(env, ns, "happy", env={"WORKLOAD_TOUCH_MIB": "16"})  # 16 MiB of state
    finally:
        env.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
