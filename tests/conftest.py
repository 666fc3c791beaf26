"""Session-wide fixtures: a real control plane (kube-apiserver + etcd + controller-manager +
scheduler on loopback) started once per test session, a real kubelet node joined to it on first
use (`kube_node`), admin and impersonating API clients, and a fresh namespace per test.

Set DYNAMO_SNAPSHOT_EXISTING_CLUSTER=1 with KUBECONFIG to run against a cluster you already have
(`just up`, kind): nothing is started or stopped then, and the few tests that must restart the
apiserver or compact etcd are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from controlplane import DEFAULT_DIR, ControlPlane
from kubenode import TEST_TAINT, KubeNode
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.errors import ApiError
from dynamo_snapshot.runtime.resource import NAMESPACES
from tests.support import Impersonate, create_test_namespace

EXISTING_CLUSTER_ENV = "DYNAMO_SNAPSHOT_EXISTING_CLUSTER"
# With EXISTING_CLUSTER_ENV: the directory of the `just up` cluster whose node tests use.
CLUSTER_DIR_ENV = "DYNAMO_SNAPSHOT_CLUSTER_DIR"
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS.parent).parts
        if parts[:2] == ("tests", "integration"):
            item.add_marker(pytest.mark.integration)
        elif parts[:2] == ("tests", "node"):
            item.add_marker(pytest.mark.node)


class ExistingCluster:
    """A cluster we did not start: usable, but never restarted, compacted or stopped by tests."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.server = ""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "kubectl",
            "--kubeconfig",
            str(self.kubeconfig),
            *(["--as", as_user] if as_user else []),
            *args,
        ]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _cannot(self, what: str) -> None:
        pytest.skip(
            f"{what} needs the control plane started by the test session"
            f" ({EXISTING_CLUSTER_ENV} is set)"
        )

    def restart_apiserver(self) -> None:
        self._cannot("restarting the apiserver")

    def stop_apiserver(self) -> None:
        self._cannot("stopping the apiserver")

    def start_apiserver(self) -> None:
        self._cannot("starting the apiserver")

    def compact_etcd(self) -> int:
        self._cannot("compacting etcd")
        return 0


@pytest.fixture(scope="session")
def kube_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControlPlane | ExistingCluster]:
    if os.environ.get(EXISTING_CLUSTER_ENV) == "1":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.fail(
                f"{EXISTING_CLUSTER_ENV}=1 needs KUBECONFIG to name the cluster's kubeconfig"
            )
        yield ExistingCluster(Path(kubeconfig))
        return
    cluster = ControlPlane(dir=tmp_path_factory.mktemp("cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


async def _api_client(
    kubeconfig: Path, impersonate_user: str | None = None, impersonate_groups: tuple[str, ...] = ()
) -> ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
    )
    api = ApiClient(configuration=cfg)
    if impersonate_user:
        api.set_default_header("Impersonate-User", impersonate_user)
        # One header value only: kubernetes_asyncio keeps default headers in a dict.
        if impersonate_groups:
            api.set_default_header("Impersonate-Group", impersonate_groups[0])
    return api


@pytest.fixture
async def kube_api(kube_cluster: ControlPlane | ExistingCluster) -> AsyncIterator[ApiClient]:
    api = await _api_client(kube_cluster.kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
def impersonate(kube_cluster: ControlPlane | ExistingCluster) -> Impersonate:
    """`async with impersonate("system:serviceaccount:ns:sa") as api:` acts as that user; for a
    ServiceAccount the apiserver adds its groups itself."""

    @contextlib.asynccontextmanager
    async def _impersonate(user: str, *groups: str) -> AsyncIterator[ApiClient]:
        api = await _api_client(kube_cluster.kubeconfig, user, groups)
        try:
            yield api
        finally:
            await api.close()

    return _impersonate


@pytest.fixture
async def namespace(kube_api: ApiClient) -> AsyncIterator[str]:
    admin = Client(kube_api)
    name = await create_test_namespace(admin)
    try:
        yield name
    finally:
        with contextlib.suppress(ApiError):
            await admin.delete(NAMESPACES, name)


@pytest.fixture(scope="session")
def kube_node(kube_cluster: ControlPlane | ExistingCluster) -> Iterator[KubeNode]:
    """A real node of the session's cluster: a kubelet (the pinned release) on a containerd of its
    own, Ready, with the pause and workload images imported. It is started on first use and
    stopped, leaving nothing on the host, at the end of the session.

    Its name is its loopback address (`kube_node.name`, 127.0.0.N). It registers with the taint
    `TEST_TAINT`, so that only pods that tolerate it (`kubenode.TEST_TOLERATION`) run there and
    tests that play the kubelet's part for their pods are not disturbed. With
    DYNAMO_SNAPSHOT_EXISTING_CLUSTER=1 it is the node of the `just up` cluster in
    DYNAMO_SNAPSHOT_CLUSTER_DIR (default .run/cluster), which has no taint."""
    if isinstance(kube_cluster, ExistingCluster):
        node = KubeNode.of(ControlPlane.load(Path(os.environ.get(CLUSTER_DIR_ENV, DEFAULT_DIR))))
        if not node.index or node.pid() is None or not node.ready():
            pytest.fail(f"no Ready node in {node.dir}: run `./hack/just up` first")
        yield node
        return
    node = KubeNode.of(kube_cluster)
    node.taints = [TEST_TAINT]
    try:
        node.up()
        yield node
    finally:
        problems = node.down()
        if problems:
            print(f"kube_node: left behind: {problems}")
