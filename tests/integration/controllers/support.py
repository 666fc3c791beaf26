"""Shared pieces of the controller tests on the real control plane.

The controllers run in-process (both managers, as their entrypoints wire them) or as real
subprocesses through their console scripts. Until a real node runs here, two stand-ins play the
parts no process of this repository plays:

- `KubeletStandIn` plays the kubelet for a Job's pod: binds it to the session's Node object and
  writes `status` (Running and Ready, then Succeeded or Failed) as a kubelet would.
- `AgentStandIn` plays the node agent: writes the content's `Ready` / `Failed` condition through
  the status subresource, as SPEC §4.3 says the agent does.

Everything else is real: the apiserver, the Job controller and garbage collector of the
kube-controller-manager, the scheduler.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import attrs
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.checkpoint_id import identity_hash
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpointIdentity
from dynamo_snapshot.api.resources import DYNAMO_CHECKPOINTS, POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.cmd import checkpoint_controller, podsnapshot_controller
from dynamo_snapshot.cmd.common import CommonOptions, parse_namespaces
from dynamo_snapshot.controllers.orphans import OrphanCollector
from dynamo_snapshot.runtime import (
    EVENTS,
    JOBS,
    PODS,
    Manager,
    ManagerOptions,
    NotFound,
    RestClient,
    meta,
)
from tests.support import wait_for

NODE = "ctrl-test-node"
TIMEOUT = 60.0
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def checkpoint_body(name: str, *, model: str | None = None, **job: Any) -> dict[str, Any]:
    """A DynamoCheckpoint with a unique identity (so tests never share a checkpoint ID)."""
    spec_job: dict[str, Any] = {
        "podTemplateSpec": {
            "metadata": {"labels": {"app": "worker"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "workload:dev",
                        "command": ["sleep", "infinity"],
                        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                    }
                ]
            },
        },
        **job,
    }
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DYNAMO_CHECKPOINT,
        "metadata": {"name": name},
        "spec": {
            "identity": {
                "model": model or f"test/{name}-{uuid.uuid4().hex[:12]}",
                "backendFramework": "vllm",
            },
            "job": spec_job,
        },
    }


def checkpoint_id_of(body: dict[str, Any]) -> str:
    ident = body["spec"]["identity"]
    return identity_hash(
        DynamoCheckpointIdentity(model=ident["model"], backend_framework=ident["backendFramework"])
    )


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return dict(cond)
    return None


@attrs.define
class Running:
    """Both controllers, running in this process against the test cluster."""

    checkpoint: Manager
    podsnapshot: Manager
    collector: OrphanCollector

    def writes(self) -> dict[str, float]:
        """API writes both managers made, by HTTP method (from rest_client_requests_total)."""
        out: dict[str, float] = {}
        for mgr in (self.checkpoint, self.podsnapshot):
            for metric in mgr.metrics.registry.collect():
                if metric.name != "rest_client_requests":
                    continue
                for sample in metric.samples:
                    if sample.name.endswith("_total") and sample.labels["method"] in WRITE_METHODS:
                        m = sample.labels["method"]
                        out[m] = out.get(m, 0) + sample.value
        return out


def _options(namespace: str | Sequence[str] | None) -> CommonOptions:
    """The options an entrypoint parses from `--namespace` (one, several, or None: all)."""
    names = [namespace] if isinstance(namespace, str) else list(namespace or ())
    return CommonOptions(
        kubeconfig=None,
        metrics_bind_address="0",
        health_probe_bind_address="0",
        log_level="info",
        log_format="text",
        namespaces=parse_namespaces(names),
    )


def _manager(api: ApiClient, opts: CommonOptions, name: str) -> Manager:
    return Manager(
        api,
        ManagerOptions(
            metrics_bind_address="0",
            health_probe_bind_address="0",
            namespaces=opts.namespaces,
            handle_signals=False,
            graceful_shutdown_timeout=5,
        ),
        field_manager=name,
    )


@contextlib.asynccontextmanager
async def controllers(
    api: ApiClient,
    namespace: str | Sequence[str],
    *,
    orphan_grace_period: float = 300.0,
    podsnapshot_api: ApiClient | None = None,
) -> AsyncIterator[Running]:
    """Run both controllers (wired exactly as their entrypoints wire them) until the block ends,
    watching `namespace` (one, or several as `--namespace a,b` gives). The PodSnapshot controller
    uses `podsnapshot_api` when given (its own identity), else `api`."""
    opts = _options(namespace)
    ck = _manager(api, opts, checkpoint_controller.PROG)
    checkpoint_controller.build(
        ck, opts, argparse.Namespace(workers=2, job_seccomp_profile=c.SECCOMP_LOCALHOST_PROFILE)
    )
    ps = _manager(podsnapshot_api or api, opts, podsnapshot_controller.PROG)
    _, collector = podsnapshot_controller.build(
        ps, opts, argparse.Namespace(workers=2, orphan_grace_period=orphan_grace_period)
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(ck.run)
        tg.start_soon(ps.run)
        await wait_for(
            lambda: ck.cache.has_synced() and ps.cache.has_synced(), 30, "caches to sync"
        )
        try:
            yield Running(ck, ps, collector)
        finally:
            ck.stop()
            ps.stop()


class Cluster:
    """Reads and writes of the test itself, as the admin (raw JSON, live)."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.client = RestClient(api)
        self.ns = namespace

    async def create_checkpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.create(DYNAMO_CHECKPOINTS, body, self.ns)

    async def checkpoint(self, name: str) -> dict[str, Any]:
        return await self.client.get(DYNAMO_CHECKPOINTS, name, self.ns)

    async def maybe(self, resource: Any, name: str, namespace: str | None = None) -> Any:
        try:
            return await self.client.get(resource, name, namespace)
        except NotFound:
            return None

    async def items(
        self, resource: Any, *, labels: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        ns = self.ns if resource.namespaced else None
        out = await self.client.list(resource, ns, label_selector=labels)
        return list(out.get("items") or [])

    async def wait_phase(self, name: str, phase: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.checkpoint(name)
            return obj if (obj.get("status") or {}).get("phase") == phase else None

        found: dict[str, Any] = await wait_for(check, timeout, f"{name} to be {phase}")
        return found

    async def wait_object(
        self, resource: Any, name: str, namespace: str | None = None, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        found: dict[str, Any] = await wait_for(
            lambda: self.maybe(resource, name, namespace), timeout, f"{resource} {name}"
        )
        return found

    async def wait_gone(
        self, resource: Any, name: str, namespace: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        async def gone() -> bool:
            return await self.maybe(resource, name, namespace) is None

        await wait_for(gone, timeout, f"{resource} {name} to be deleted")

    async def events(self, name: str) -> builtins.list[tuple[str, str, str]]:
        """(type, reason, message) of the Events about object `name` in the namespace."""
        out = await self.client.list(EVENTS, self.ns, field_selector=f"involvedObject.name={name}")
        return [
            (e.get("type", ""), e.get("reason", ""), e.get("message", ""))
            for e in out.get("items") or []
        ]

    async def wait_event(self, name: str, reason: str, timeout: float = TIMEOUT) -> str:
        async def find() -> str | None:
            for _type, r, message in await self.events(name):
                if r == reason:
                    return message
            return None

        found: str = await wait_for(find, timeout, f"Event {reason} on {name}")
        return found

    async def job_pod(self, job_name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        async def find() -> dict[str, Any] | None:
            pods = await self.items(PODS, labels=f"{c.LABEL_JOB_NAME}={job_name}")
            return pods[0] if pods else None

        found: dict[str, Any] = await wait_for(find, timeout, f"the pod of Job {job_name}")
        return found

    async def content_of(self, snapshot_name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        snap = await self.wait_object(POD_SNAPSHOTS, snapshot_name, self.ns, timeout)
        name = f"{c.POD_SNAPSHOT_CONTENT_NAME_PREFIX}{meta(snap)['uid']}"
        return await self.wait_object(POD_SNAPSHOT_CONTENTS, name, None, timeout)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeletStandIn:
    """Plays the kubelet for one pod: bind, then write status. A STAND-IN until the real node."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    async def run(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Bind the pod to the test node and report every container Running and Ready."""
        name, ns = meta(pod)["name"], meta(pod)["namespace"]
        with contextlib.suppress(Exception):  # the scheduler may not bind to a fake node anyway
            await self.c.client._request(
                "POST",
                PODS.path(ns, name, "binding"),
                body={
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                },
            )
        containers = pod["spec"]["containers"]
        statuses = [
            {
                "name": ctr["name"],
                "ready": True,
                "started": True,
                "restartCount": 0,
                "image": ctr.get("image", ""),
                "imageID": "",
                "containerID": f"containerd://{'0' * 63}{i}",
                "state": {"running": {"startedAt": _now()}},
            }
            for i, ctr in enumerate(containers)
        ]
        return await self._status(
            pod,
            {
                "phase": "Running",
                "startTime": _now(),
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Initialized", "status": "True"},
                    {"type": "ContainersReady", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
                "containerStatuses": statuses,
            },
        )

    async def finish(self, pod: dict[str, Any], exit_code: int) -> dict[str, Any]:
        """Every container exited with `exit_code` (0: the workload saw snapshot-complete)."""
        statuses = [
            {
                "name": ctr["name"],
                "ready": False,
                "started": False,
                "restartCount": 0,
                "image": ctr.get("image", ""),
                "imageID": "",
                "containerID": f"containerd://{'0' * 63}{i}",
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "startedAt": _now(),
                        "finishedAt": _now(),
                    }
                },
            }
            for i, ctr in enumerate(pod["spec"]["containers"])
        ]
        return await self._status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "PodCompleted"},
                    {"type": "ContainersReady", "status": "False", "reason": "PodCompleted"},
                ],
                "containerStatuses": statuses,
            },
        )

    async def _status(self, pod: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        name, ns = meta(pod)["name"], meta(pod)["namespace"]
        return await self.c.client.patch_status(PODS, name, {"status": status}, ns)


class AgentStandIn:
    """Writes a content's status as the node agent does (SPEC §4.3). A STAND-IN for the agent."""

    def __init__(self, cluster: Cluster) -> None:
        self.c = cluster

    async def ready(self, content: dict[str, Any]) -> dict[str, Any]:
        return await self._conditions(
            content,
            [
                {
                    "type": c.CONDITION_READY,
                    "status": "True",
                    "reason": c.REASON_CAPTURED,
                    "message": "captured by the agent stand-in",
                    "lastTransitionTime": _now(),
                }
            ],
        )

    async def failed(self, content: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
        return await self._conditions(
            content,
            [
                {
                    "type": c.CONDITION_READY,
                    "status": "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": _now(),
                },
                {
                    "type": c.CONDITION_FAILED,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": _now(),
                },
            ],
        )

    async def _conditions(
        self, content: dict[str, Any], conds: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return await self.c.client.patch_status(
            POD_SNAPSHOT_CONTENTS, meta(content)["name"], {"status": {"conditions": conds}}
        )


async def drive_to_ready(
    cluster: Cluster, name: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The happy path from a created DynamoCheckpoint to Ready; returns (checkpoint, content)."""
    kubelet, agent = KubeletStandIn(cluster), AgentStandIn(cluster)
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    await cluster.wait_object(JOBS, job_name, cluster.ns)
    pod = await kubelet.run(await cluster.job_pod(job_name))
    content = await cluster.content_of(name)
    await agent.ready(content)
    await wait_for(
        lambda: _ready_snapshot(cluster, name), TIMEOUT, f"PodSnapshot {name} to be Ready"
    )
    await kubelet.finish(pod, 0)
    ckpt = await cluster.wait_phase(name, c.PHASE_READY)
    return ckpt, content


async def _ready_snapshot(cluster: Cluster, name: str) -> bool:
    snap = await cluster.maybe(POD_SNAPSHOTS, name, cluster.ns)
    cond = condition(snap, c.CONDITION_READY) if snap else None
    return bool(cond and cond["status"] == "True")
