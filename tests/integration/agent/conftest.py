"""Fixtures of the agent's integration tests: the real apiserver of the session, the CRDs, the
private containerd of hack/node (set DYNAMO_SNAPSHOT_NODE_RUN to keep it private), and agents
run in-process (or as processes, for kill -9) against both."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.agent.app import assemble
from dynamo_snapshot.agent.capture import CONTENTS
from dynamo_snapshot.agent.config import AgentConfig
from dynamo_snapshot.agent.cri.client import CriClient
from dynamo_snapshot.agent.reconciler import Agent
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import Manager, ManagerOptions, RestClient
from tests.integration.agent.kubelet import NODE_NAME, PlayedPod, ensure_node, played_pod
from tests.integration.api.crds_fixture import install_crds
from tests.node import conftest as node_fixtures
from tests.support import wait_for

RunAgent = Callable[..., AbstractAsyncContextManager[tuple[Manager, Agent]]]

# The node tests' fixtures: the private containerd, a CRI client on it, the checked CRIU.
node_runtime = node_fixtures.node_runtime
cri_endpoint = node_fixtures.cri_endpoint
cri = node_fixtures.cri
criu = node_fixtures.criu


@pytest.fixture(scope="session")
def crds(kube_cluster: Any) -> list[str]:
    return install_crds(kube_cluster)


@pytest.fixture
async def api(kube_api: ApiClient, crds: list[str]) -> RestClient:
    client = RestClient(kube_api)
    await ensure_node(client)
    return client


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    root.mkdir(mode=0o700)
    return root


def agent_config(
    cri_endpoint: str, criu: Path, storage_root: Path, **overrides: Any
) -> AgentConfig:
    values: dict[str, Any] = {
        "node_name": NODE_NAME,
        "runtime_endpoint": cri_endpoint,
        "storage_root": str(storage_root),
        "criu_path": str(criu),
        "method": "criu",
        "workers": 2,
        "checkpoint_timeout_seconds": 120.0,
        "fsync": False,
    }
    values.update(overrides)
    return AgentConfig(**values)


@pytest.fixture
def run_agent(kube_api: ApiClient, cri_endpoint: str, criu: Path, storage_root: Path) -> RunAgent:
    """``async with run_agent(method="cri", ...) as (mgr, agent):`` runs one agent in-process."""

    @contextlib.asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[tuple[Manager, Agent]]:
        identity = overrides.pop("identity", None)
        cfg = agent_config(cri_endpoint, criu, storage_root, **overrides)
        options = ManagerOptions(
            metrics_bind_address="127.0.0.1:0",
            health_probe_bind_address="127.0.0.1:0",
            handle_signals=False,
            graceful_shutdown_timeout=10.0,
        )
        async with (
            assemble(kube_api, cfg, options, identity=identity) as (mgr, agent),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(mgr.run)
            try:
                yield mgr, agent
            finally:
                mgr.stop()

    return run


async def create_content(
    api: RestClient,
    namespace: str,
    pod_name: str,
    *,
    pod_uid: str | None = None,
    containers: tuple[str, ...] = ("main",),
    node: str = NODE_NAME,
) -> dict[str, Any]:
    """A work order as the PodSnapshot controller writes it (its PodSnapshot need not exist
    for the agent)."""
    snap_uid = str(uuid.uuid4())
    pod_ref: dict[str, Any] = {"name": pod_name, "containers": list(containers)}
    if pod_uid:
        pod_ref["uid"] = pod_uid
    body = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_POD_SNAPSHOT_CONTENT,
        "metadata": {
            "name": f"{c.POD_SNAPSHOT_CONTENT_NAME_PREFIX}{snap_uid}",
            "labels": {c.LABEL_SNAPSHOT_NODE: node},
        },
        "spec": {
            "snapshotRef": {"namespace": namespace, "name": pod_name, "uid": snap_uid},
            "source": {"nodeName": node, "podRef": pod_ref},
        },
    }
    return await api.create(CONTENTS, body)


@attrs.frozen
class Bed:
    """What an agent test plays around the agent: the kubelet (pods in the apiserver and the
    private containerd) and the PodSnapshot controller (work orders), in the test's namespace."""

    api: RestClient
    cri: CriClient
    namespace: str
    workdir: Path

    def pod(self, **kwargs: Any) -> AbstractAsyncContextManager[PlayedPod]:
        """``async with bed.pod(...) as pod:`` a played pod (see ``kubelet.played_pod``)."""
        return played_pod(self.api, self.cri, self.namespace, self.workdir, **kwargs)

    async def order(self, pod: PlayedPod | str, **kwargs: Any) -> dict[str, Any]:
        """A work order for ``pod`` (a played pod: its name and UID; or just a name)."""
        if isinstance(pod, PlayedPod):
            kwargs.setdefault("pod_uid", pod.uid)
            pod = pod.name
        return await create_content(self.api, self.namespace, pod, **kwargs)

    async def terminal(self, content: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The content's Ready or Failed condition, once one is True."""
        name = content["metadata"]["name"]
        found: dict[str, Any] = await wait_for(
            lambda: terminal_condition(self.api, name), timeout, f"{name} terminal"
        )
        return found


@pytest.fixture
def bed(api: RestClient, cri: CriClient, namespace: str, tmp_path: Path) -> Bed:
    return Bed(api, cri, namespace, tmp_path)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


async def terminal_condition(api: RestClient, name: str) -> dict[str, Any] | None:
    """The content's Ready or Failed condition once one is True, else None."""
    obj = await api.get(CONTENTS, name)
    for t in (c.CONDITION_READY, c.CONDITION_FAILED):
        cond = condition(obj, t)
        if cond and cond["status"] == "True":
            return cond
    return None
