"""The agent on a real node: a kubelet runs the workload pod (SPEC §3 control volume as an
emptyDir with subPath, the checkpoint Job's readiness probe), the agent captures it through the
kubelet's own containerd, and the kubelet sees the workload exit 0 after the sentinel."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from kubenode import TEST_TOLERATION, KubeNode

from dynamo_snapshot.agent import artifact
from dynamo_snapshot.agent.cri.podconfig import WORKLOAD_IMAGE
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import PODS, RestClient
from tests.integration.agent.conftest import RunAgent, create_content, terminal_condition
from tests.support import wait_for

pytestmark = pytest.mark.node


def _pod(name: str, node: str, checkpoint_id: str) -> dict[str, Any]:
    control = c.CONTROL_VOLUME_NAME
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                c.LABEL_CHECKPOINT_ID: checkpoint_id,
                c.LABEL_IS_CHECKPOINT_SOURCE: c.LABEL_TRUE,
            },
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [TEST_TOLERATION],
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "main",
                    "image": WORKLOAD_IMAGE,
                    "imagePullPolicy": "Never",
                    "env": [
                        {"name": c.CONTROL_DIR_ENV, "value": c.CONTROL_MOUNT_PATH},
                        {"name": c.LEGACY_CONTROL_DIR_ENV, "value": c.CONTROL_MOUNT_PATH},
                        {"name": "WORKLOAD_TICK_SECONDS", "value": "0.1"},
                        {"name": "WORKLOAD_TOUCH_MIB", "value": "16"},
                    ],
                    "volumeMounts": [
                        {"name": control, "mountPath": c.CONTROL_MOUNT_PATH, "subPath": "main"}
                    ],
                    "readinessProbe": {
                        "exec": {"command": ["cat", f"{c.CONTROL_MOUNT_PATH}/ready-for-snapshot"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }
            ],
            "volumes": [{"name": control, "emptyDir": {}}],
        },
    }


@pytest.mark.parametrize("method", ["criu", "cri"])
async def test_capture_on_a_real_kubelet_node(
    method: str,
    kube_node: KubeNode,
    api: RestClient,
    namespace: str,
    run_agent: RunAgent,
    storage_root: Path,
) -> None:
    checkpoint_id = f"node-{method}"
    name = f"worker-{uuid.uuid4().hex[:6]}"
    async with run_agent(
        method=method,
        node_name=kube_node.name,
        runtime_endpoint=str(kube_node.cri_socket),
    ):
        pod = await api.create(PODS, _pod(name, kube_node.name, checkpoint_id), namespace)
        content = await create_content(
            api, namespace, name, pod_uid=pod["metadata"]["uid"], node=kube_node.name
        )
        cname = content["metadata"]["name"]
        cond = await wait_for(lambda: terminal_condition(api, cname), 120, f"{cname} terminal")
        assert cond["reason"] == c.REASON_CAPTURED, cond
        manifest = artifact.verify(storage_root / checkpoint_id / "versions" / "1", full=True)
        assert manifest["method"] == method
        assert manifest["node"]["name"] == kube_node.name

        async def succeeded() -> bool:
            obj = await api.get(PODS, name, namespace)
            return bool(obj.get("status", {}).get("phase") == "Succeeded")

        # The sentinel reached the workload through the kubelet's subPath mount: it exited 0.
        await wait_for(succeeded, 60, f"pod {name} Succeeded")
