"""The happy path of SPEC §4.1 on a real kubelet node: the checkpoint Job's pod really runs the
workload image, its readiness probe really reads `ready-for-snapshot`, and the Job really
completes when the workload sees `snapshot-complete`. Only the node agent is still played by a
stand-in (it marks the content Ready and publishes `snapshot-complete` into the pod's emptyDir on
the node's disk, as the agent does after a verified dump)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio
from kubenode import TEST_TOLERATION, KubeNode
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.resources import POD_SNAPSHOTS
from dynamo_snapshot.cmd import checkpoint_controller, podsnapshot_controller
from dynamo_snapshot.runtime import JOBS, PODS, Manager, ManagerOptions, meta
from tests.integration.api.crds_fixture import install_crds
from tests.integration.controllers.support import (
    AgentStandIn,
    Cluster,
    _options,
    checkpoint_id_of,
    condition,
)
from tests.node.support import WORKLOAD_IMAGE
from tests.support import wait_for


def _publish(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.rename(path)


async def test_happy_path_on_the_real_node(
    kube_node: KubeNode, kube_api: ApiClient, namespace: str
) -> None:
    install_crds(kube_node.cluster)
    cluster = Cluster(kube_api, namespace)
    opts = _options(namespace)
    ck = Manager(
        kube_api,
        ManagerOptions(
            metrics_bind_address="0",
            health_probe_bind_address="0",
            namespace=namespace,
            handle_signals=False,
        ),
    )
    # No seccomp localhost profile: the agent's DaemonSet, which installs it, does not run here.
    checkpoint_controller.build(ck, opts, argparse.Namespace(workers=2, job_seccomp_profile=""))
    ps = Manager(
        kube_api,
        ManagerOptions(
            metrics_bind_address="0",
            health_probe_bind_address="0",
            namespace=namespace,
            handle_signals=False,
        ),
    )
    podsnapshot_controller.build(ps, opts, argparse.Namespace(workers=2, orphan_grace_period=300.0))
    body: dict[str, Any] = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DYNAMO_CHECKPOINT,
        "metadata": {"name": "on-node"},
        "spec": {
            "identity": {"model": f"test/on-node-{namespace}", "backendFramework": "vllm"},
            "job": {
                "activeDeadlineSeconds": 300,
                "podTemplateSpec": {
                    "spec": {
                        "tolerations": [TEST_TOLERATION],
                        "terminationGracePeriodSeconds": 2,
                        "containers": [
                            {
                                "name": "main",
                                "image": WORKLOAD_IMAGE,
                                "imagePullPolicy": "Never",
                                "env": [{"name": "WORKLOAD_TICK_SECONDS", "value": "0.1"}],
                                # Rewritten by the controller into the control-file probe.
                                "livenessProbe": {"exec": {"command": ["false"]}},
                            }
                        ],
                    }
                },
            },
        },
    }
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with anyio.create_task_group() as tg:
        tg.start_soon(ck.run)
        tg.start_soon(ps.run)
        try:
            await cluster.create_checkpoint(body)
            await cluster.wait_object(JOBS, job_name, namespace)
            pod = await cluster.job_pod(job_name)
            assert meta(pod)["labels"][c.LABEL_IS_CHECKPOINT_SOURCE] == "true"

            async def ready_pod() -> dict[str, Any] | None:
                p = await cluster.client.get(PODS, meta(pod)["name"], namespace)
                return p if (condition(p, "Ready") or {}).get("status") == "True" else None

            # The workload writes ready-for-snapshot after its warm-up: the rewritten probe sees it.
            running = await wait_for(ready_pod, 90, "the workload Ready on the node", interval=0.3)
            assert running["spec"]["nodeName"] == kube_node.name
            content = await cluster.content_of("on-node")
            assert content["spec"]["source"]["nodeName"] == kube_node.name
            assert meta(content)["labels"] == {c.LABEL_SNAPSHOT_NODE: kube_node.name}
            # The agent stand-in: Ready on the content, then the sentinel for the workload.
            await AgentStandIn(cluster).ready(content)

            async def snapshot_ready() -> bool:
                snap = await cluster.client.get(POD_SNAPSHOTS, "on-node", namespace)
                return (condition(snap, "Ready") or {}).get("status") == "True"

            await wait_for(snapshot_ready, 60, "the PodSnapshot Ready")
            control = kube_node.empty_dir(meta(running)["uid"], c.CONTROL_VOLUME_NAME) / "main"
            assert (control / c.READY_FOR_SNAPSHOT_FILE).exists()
            _publish(control / c.SNAPSHOT_COMPLETE_FILE, "done\n")
            ckpt = await cluster.wait_phase("on-node", c.PHASE_READY, timeout=90)
            assert ckpt["status"]["checkpointID"] == checkpoint_id_of(body)
            assert ckpt["status"]["createdAt"]
            reasons = {x["type"]: x["reason"] for x in ckpt["status"]["conditions"]}
            assert reasons == {"JobCreated": "JobCreated", "JobCompleted": "JobComplete"}
            await cluster.wait_event("on-node", c.REASON_CHECKPOINT_READY)
            logs = kube_node.container_log(namespace, meta(running)["name"], "main")
            assert "snapshot-complete" in logs
        finally:
            ck.stop()
            ps.stop()
