"""The test plays the kubelet (until a real node runs the agent's tests): it creates a Pod object
bound to the test node in the real apiserver, runs the pod's sandbox and workload container
through the private containerd's CRI, and keeps the Pod's status in step with the runtime the
way a kubelet does (containerID, running / terminated, Ready from the workload's
``ready-for-snapshot`` file, which is what the checkpoint Job's readiness probe checks).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from dynamo_snapshot.agent.cri.client import CriClient, CriError, CriNotFound, pb
from dynamo_snapshot.agent.cri.podconfig import sandbox_config, workload_config
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import NODES, PODS, AlreadyExists, NotFound, RestClient
from tests.node.support import remove_cgroups

NODE_NAME = "agent-test-node"


async def ensure_node(api: RestClient, name: str = NODE_NAME) -> None:
    """A Node object, so that the pod garbage collector keeps pods bound to it."""
    with contextlib.suppress(AlreadyExists):
        await api.create(NODES, {"metadata": {"name": name, "labels": {"test": "agent"}}})


@dataclass
class PlayedPod:
    """A pod that exists both in the apiserver and in containerd."""

    api: RestClient
    cri: CriClient
    namespace: str
    name: str
    uid: str
    control_dir: Path
    sandbox_id: str = ""
    container_id: str = ""
    sandbox_config: pb.PodSandboxConfig | None = None
    extra_statuses: list[dict[str, Any]] = field(default_factory=list)
    override_container_id: str | None = None

    @property
    def qualified_id(self) -> str:
        return f"containerd://{self.container_id}"

    async def status_from_runtime(self) -> dict[str, Any]:
        """The Pod status a kubelet would report now."""
        statuses = list(self.extra_statuses)
        phase = "Running"
        if self.container_id:
            try:
                st = (await self.cri.container_status(self.container_id)).status
            except CriNotFound:
                st = None
            cid = self.override_container_id or self.qualified_id
            if st is not None and st.state == pb.CONTAINER_RUNNING:
                ready = (self.control_dir / c.READY_FOR_SNAPSHOT_FILE).exists()
                statuses.append(
                    {
                        "name": "main",
                        "containerID": cid,
                        "image": "localhost/dynamo-snapshot/workload:v1",
                        "imageID": "",
                        "ready": ready,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    }
                )
            else:
                code = int(st.exit_code) if st is not None else 137
                statuses.append(
                    {
                        "name": "main",
                        "containerID": cid,
                        "image": "localhost/dynamo-snapshot/workload:v1",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": code,
                                "reason": "Completed" if code == 0 else "Error",
                                "startedAt": "2026-01-01T00:00:00Z",
                                "finishedAt": "2026-01-01T00:00:01Z",
                            }
                        },
                    }
                )
                if all("terminated" in s["state"] for s in statuses):
                    codes = [s["state"]["terminated"]["exitCode"] for s in statuses]
                    phase = "Succeeded" if all(x == 0 for x in codes) else "Failed"
        ready = bool(statuses) and all(s.get("ready") for s in statuses)
        return {
            "phase": phase,
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
            ],
            "containerStatuses": statuses,
        }

    async def sync(self) -> None:
        status = await self.status_from_runtime()
        with contextlib.suppress(NotFound):
            await self.api.patch_status(PODS, self.name, {"status": status}, self.namespace)

    async def exited(self) -> bool:
        return await self.exit_code() is not None

    async def exit_code(self) -> int | None:
        st = (await self.cri.container_status(self.container_id)).status
        return int(st.exit_code) if st.state == pb.CONTAINER_EXITED else None


def pod_manifest(
    name: str,
    namespace: str,
    *,
    node: str,
    checkpoint_id: str | None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    labels = {c.LABEL_IS_CHECKPOINT_SOURCE: c.LABEL_TRUE}
    if checkpoint_id is not None:
        labels[c.LABEL_CHECKPOINT_ID] = checkpoint_id
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "localhost/dynamo-snapshot/workload:v1"}],
        },
    }


@contextlib.asynccontextmanager
async def played_pod(
    api: RestClient,
    cri: CriClient,
    namespace: str,
    workdir: Path,
    *,
    checkpoint_id: str | None = "ckpt-test",
    annotations: Mapping[str, str] | None = None,
    touch_mib: int = 8,
    start: bool = True,
    node: str = NODE_NAME,
) -> AsyncIterator[PlayedPod]:
    """Create the Pod object and (``start``) its containers; keep its status in step while
    the block runs; remove the sandbox at the end."""
    name = f"worker-{uuid.uuid4().hex[:6]}"
    obj = await api.create(
        PODS,
        pod_manifest(
            name, namespace, node=node, checkpoint_id=checkpoint_id, annotations=annotations
        ),
        namespace,
    )
    control = workdir / name / "control"
    logs = workdir / name / "logs"
    control.mkdir(parents=True)
    logs.mkdir(parents=True)
    pod = PlayedPod(api, cri, namespace, name, obj["metadata"]["uid"], control)
    try:
        async with anyio.create_task_group() as tg:
            if start:
                pod.sandbox_config = sandbox_config(name, logs, namespace=namespace, uid=pod.uid)
                pod.sandbox_id = await cri.run_pod_sandbox(pod.sandbox_config)
                pod.container_id = await cri.create_container(
                    pod.sandbox_id,
                    workload_config(control, env={"WORKLOAD_TOUCH_MIB": str(touch_mib)}),
                    pod.sandbox_config,
                )
                await cri.start_container(pod.container_id)
                tg.start_soon(_keep_in_step, pod)
            yield pod
            tg.cancel_scope.cancel()
    finally:
        if pod.sandbox_id:
            await _remove_sandbox(cri, pod.sandbox_id)
            if pod.sandbox_config is not None:
                remove_cgroups(pod.sandbox_config.linux.cgroup_parent)


async def _remove_sandbox(cri: CriClient, sandbox_id: str) -> None:
    """Stop and remove, as a kubelet does: again when containerd 2.1 answers "ttrpc: closed"
    (a shim that exited with its container while being stopped)."""
    for attempt in range(5):
        try:
            await cri.stop_pod_sandbox(sandbox_id)
            await cri.remove_pod_sandbox(sandbox_id)
            return
        except CriNotFound:
            return
        except CriError:
            if attempt == 4:
                raise
            await anyio.sleep(0.2 * (attempt + 1))


async def _keep_in_step(pod: PlayedPod) -> None:
    """Report the runtime's state into the Pod status whenever it changes (kubelet's PLEG)."""
    last: dict[str, Any] | None = None
    while True:
        status = await pod.status_from_runtime()
        if status != last:
            with contextlib.suppress(NotFound):
                await pod.api.patch_status(PODS, pod.name, {"status": status}, pod.namespace)
            last = status
        await anyio.sleep(0.1)
