"""A real kubelet node joined to the session's cluster (the `kube_node` fixture): it is Ready with
the pinned version, runs a Job of the workload image through the control-volume contract of SPEC
§3, is confined by NodeRestriction, answers the kubelet checkpoint API (KEP-2008), and leaves the
direct-CRI node runtime alone."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubenode import TEST_TOLERATION, KubeNode
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.agent.cri.client import CriClient, pb
from tests.node.support import WORKLOAD_IMAGE, read_counter, remove_cgroups, sandbox_config
from tests.support import Impersonate, wait_for

KUBE_VERSION = os.environ.get("KUBE_VERSION", "v1.34.4")
CONTROL = "snapshot-control"


def _get(kube_node: KubeNode, *args: str) -> Any:
    return json.loads(kube_node.cluster.kubectl(*args, "-o", "json").stdout)


def _kubectl_as_node(kube_node: KubeNode, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with the node's own credentials (its client certificate)."""
    return subprocess.run(
        [str(kube_node.cluster.kubectl_path()), "--kubeconfig", str(kube_node.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _workload_pod_spec(env: dict[str, str]) -> dict[str, Any]:
    """The workload with the SPEC §3 control volume and the readiness probe a checkpoint Job
    gets, tolerating the test node's taint."""
    return {
        "restartPolicy": "Never",
        "tolerations": [TEST_TOLERATION],
        "terminationGracePeriodSeconds": 2,
        "containers": [
            {
                "name": "main",
                "image": WORKLOAD_IMAGE,
                "imagePullPolicy": "Never",
                "env": [
                    {"name": "SNAPSHOT_CONTROL_DIR", "value": f"/{CONTROL}"},
                    {"name": "DYN_SNAPSHOT_CONTROL_DIR", "value": f"/{CONTROL}"},
                    *({"name": k, "value": v} for k, v in env.items()),
                ],
                "volumeMounts": [{"name": CONTROL, "mountPath": f"/{CONTROL}", "subPath": "main"}],
                "readinessProbe": {
                    "exec": {"command": ["cat", f"/{CONTROL}/ready-for-snapshot"]},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            }
        ],
        "volumes": [{"name": CONTROL, "emptyDir": {}}],
    }


def _publish(path: Path, text: str) -> None:
    """Write a control file as the agent does: a temp file, then rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.rename(path)


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"])
    return None


def _kubelet_ssl(kube_node: KubeNode, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(kube_node.cluster.pki.ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _post(url: str, ctx: ssl.SSLContext) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), context=ctx) as r:
        return json.loads(r.read())


def _tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def _same_socket(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def test_node_is_ready_with_the_pinned_version(kube_node: KubeNode) -> None:
    node = _get(kube_node, "get", "node", kube_node.name)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == KUBE_VERSION
    assert info["containerRuntimeVersion"].startswith("containerd://2.")
    assert _condition(node, "Ready") == "True"
    # Both addresses are the node's loopback IP: the apiserver never needs a name lookup.
    assert {(a["type"], a["address"]) for a in node["status"]["addresses"]} == {
        ("InternalIP", kube_node.name),
        ("Hostname", kube_node.name),
    }
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == kube_node.port
    table = kube_node.cluster.kubectl("get", "nodes", "--no-headers").stdout.split("\n")
    assert any(row.split()[:2] == [kube_node.name, "Ready"] for row in table if row), table
    assert any(row.split()[-1] == KUBE_VERSION for row in table if row), table


def test_kubelet_api_is_authenticated_and_authorized(kube_node: KubeNode) -> None:
    """Anonymous access is off, the read-only port is closed, and a client certificate signed by
    the cluster CA is still checked against RBAC (webhook authorization)."""
    anonymous = ssl.create_default_context(cafile=str(kube_node.cluster.pki.ca))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{kube_node.url}/pods", context=anonymous)
    assert refused.value.code == 401
    with socket.socket() as s:
        assert s.connect_ex((kube_node.name, 10255)) != 0  # the read-only port
    pki = kube_node.dir / "pki"
    as_node = _kubelet_ssl(kube_node, pki / "kubelet-client.crt", pki / "kubelet-client.key")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{kube_node.url}/pods", context=as_node)
    assert refused.value.code == 403
    admin = kube_node.cluster.pki
    ctx = _kubelet_ssl(kube_node, admin.cert("admin"), admin.key("admin"))
    with urllib.request.urlopen(f"{kube_node.url}/pods", context=ctx) as r:
        assert json.loads(r.read())["kind"] == "PodList"


async def test_job_follows_ready_for_snapshot_and_completes_after_snapshot_complete(
    kube_node: KubeNode, namespace: str
) -> None:
    # The workload never declares itself ready here: the test writes the files from the host,
    # into the pod's emptyDir on the node's disk, as the workload and the agent would.
    spec = _workload_pod_spec(
        {"WORKLOAD_WARMUP_TICKS": "1000000000", "WORKLOAD_TICK_SECONDS": "0.2"}
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "capture", "namespace": namespace},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }
    kube_node.cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def pod() -> dict[str, Any] | None:
        pods = _get(kube_node, "get", "pods", "-n", namespace, "-l", "job-name=capture")["items"]
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    running = await wait_for(pod, 60, "the Job's pod running on the node", interval=0.3)
    name, uid = running["metadata"]["name"], running["metadata"]["uid"]
    assert running["spec"]["nodeName"] == kube_node.name

    def probe_failed() -> bool:
        events = _get(
            kube_node, "get", "events", "-n", namespace, "--field-selector",
            f"involvedObject.name={name},reason=Unhealthy",
        )["items"]  # fmt: skip
        return any("Readiness probe failed" in e["message"] for e in events)

    await wait_for(probe_failed, 30, "a failed readiness probe", interval=0.3)
    assert _condition(_get(kube_node, "get", "pod", "-n", namespace, name), "Ready") == "False"

    control = kube_node.empty_dir(uid, CONTROL) / "main"
    await wait_for(lambda: read_counter(control) > 0, 30, "the workload's first tick")
    _publish(control / "ready-for-snapshot", "ready\n")

    def ready() -> bool:
        return _condition(_get(kube_node, "get", "pod", "-n", namespace, name), "Ready") == "True"

    await wait_for(ready, 30, "the pod Ready once ready-for-snapshot exists", interval=0.3)

    _publish(control / "snapshot-complete", "done\n")

    def complete() -> bool:
        return _condition(
            _get(kube_node, "get", "job", "-n", namespace, "capture"), "Complete"
        ) == ("True")

    await wait_for(complete, 60, "the Job Complete after snapshot-complete", interval=0.3)
    # The output, read on the node's disk and through the apiserver (which dials the kubelet on
    # its loopback address: no name lookup).
    assert "snapshot-complete at counter" in kube_node.container_log(namespace, name, "main")
    logs = kube_node.cluster.kubectl("logs", "-n", namespace, name, "-c", "main").stdout
    assert "snapshot-complete at counter" in logs
    apiserver_log = (kube_node.cluster.dir / "kube-apiserver.log").read_text(errors="replace")
    # What a name resolution of the node would have logged (TESTBED: "lookup <node> on <dns>:53").
    assert re.search(r"lookup \S+ on \S+:53|no such host", apiserver_log) is None


async def test_node_restriction_confines_the_node_to_itself(
    kube_node: KubeNode, kube_api: ApiClient, namespace: str, impersonate: Impersonate
) -> None:
    core = client.CoreV1Api(kube_api)
    other = f"other-node-{uuid.uuid4().hex[:8]}"
    await core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=other)))
    try:
        await core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="elsewhere"),
                spec=client.V1PodSpec(
                    node_name=other,
                    containers=[client.V1Container(name="c", image=WORKLOAD_IMAGE)],
                ),
            ),
        )
        note = {"metadata": {"annotations": {"dynamo-snapshot.test/touched": "yes"}}}

        # The node's own certificate: its own Node yes, another Node or its pods no.
        own = _kubectl_as_node(kube_node, "annotate", "node", kube_node.name, "t=1", "--overwrite")
        assert own.returncode == 0, own.stderr
        for args in (
            ("annotate", "node", other, "t=1"),
            ("delete", "pod", "-n", namespace, "elsewhere", "--wait=false"),
            ("label", "pod", "-n", namespace, "elsewhere", "t=1"),
        ):
            denied = _kubectl_as_node(kube_node, *args)
            assert denied.returncode != 0
            assert "forbidden" in denied.stderr.lower(), denied.stderr

        # The same through impersonation of the node's user and group.
        user = f"system:node:{kube_node.name}"
        async with impersonate(user, "system:nodes") as as_node:
            nodes = client.CoreV1Api(as_node)
            await nodes.patch_node(kube_node.name, note)
            with pytest.raises(client.ApiException) as refused:
                await nodes.patch_node(other, note)
            assert refused.value.status == 403
            message = json.loads(refused.value.body or b"{}")["message"]
            assert f'node "{kube_node.name}" is not allowed to modify node "{other}"' in message
            with pytest.raises(client.ApiException) as refused:
                await nodes.patch_namespaced_pod_status(
                    "elsewhere", namespace, {"status": {"message": "stolen"}}
                )
            assert refused.value.status == 403
            # The Node authorizer: no secret of a pod of another node, or of none.
            with pytest.raises(client.ApiException) as refused:
                await nodes.read_namespaced_secret("anything", namespace)
            assert refused.value.status == 403
        pod_after = await core.read_namespaced_pod("elsewhere", namespace)
        assert pod_after.status.message != "stolen"
    finally:
        await core.delete_node(other)


async def test_kubelet_checkpoint_api_writes_an_archive(
    kube_node: KubeNode, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dumped", "namespace": namespace},
        "spec": _workload_pod_spec({"WORKLOAD_TICK_SECONDS": "0.1"}),
    }
    kube_node.cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def ready() -> dict[str, Any] | None:
        got = _get(kube_node, "get", "pod", "-n", namespace, "dumped")
        return got if _condition(got, "Ready") == "True" else None

    running = await wait_for(ready, 60, "the pod Ready", interval=0.3)
    control = kube_node.empty_dir(running["metadata"]["uid"], CONTROL) / "main"

    archive = kube_node.checkpoint(namespace, "dumped", "main")
    # Archive names have one-second resolution: a call right after must not overwrite the first.
    second = kube_node.checkpoint(namespace, "dumped", "main")
    assert second != archive
    assert archive.parent == kube_node.kubelet_root / "checkpoints"
    assert archive.name.startswith(f"checkpoint-dumped_{namespace}-main-")
    names = _tar_names(archive)
    assert "config.dump" in names
    assert any(n.startswith("checkpoint/") for n in names)
    assert "config.dump" in _tar_names(second)

    # The container keeps running: its counter moves on after the dump.
    before = read_counter(control)
    await wait_for(lambda: read_counter(control) > before, 30, "the counter to advance")
    got = _get(kube_node, "get", "pod", "-n", namespace, "dumped")
    assert got["status"]["containerStatuses"][0]["restartCount"] == 0

    # The node's own credentials are not allowed nodes/checkpoint.
    url = f"{kube_node.url}/checkpoint/{namespace}/dumped/main"
    pki = kube_node.dir / "pki"
    as_node = _kubelet_ssl(kube_node, pki / "kubelet-client.crt", pki / "kubelet-client.key")
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(url, as_node)
    assert refused.value.code == 403


def _pleg_relists(kube_node: KubeNode) -> int:
    """How many times the kubelet has listed its runtime's pods (from its /metrics)."""
    pki = kube_node.cluster.pki
    ctx = _kubelet_ssl(kube_node, pki.cert("admin"), pki.key("admin"))
    with urllib.request.urlopen(f"{kube_node.url}/metrics", context=ctx) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("kubelet_pleg_relist_duration_seconds_count"):
            return int(float(line.split()[-1]))
    raise AssertionError("no kubelet_pleg_relist_duration_seconds_count in the kubelet's metrics")


async def test_direct_cri_pods_are_out_of_the_kubelets_reach(
    kube_node: KubeNode, cri: CriClient, cri_endpoint: str, tmp_path: Path
) -> None:
    """The kubelet kills every CRI pod it did not create: the direct-CRI tests' runtime must be
    another containerd, whose pods survive while the kubelet works."""
    assert not _same_socket(Path(cri_endpoint), kube_node.cri_socket)
    config = sandbox_config(f"beside-kubelet-{uuid.uuid4().hex[:8]}", tmp_path)
    sandbox = await cri.run_pod_sandbox(config)
    try:
        start = _pleg_relists(kube_node)
        # Orphans are killed a few seconds after the kubelet first lists them: let it list the
        # runtime's pods several times over.
        await wait_for(lambda: _pleg_relists(kube_node) >= start + 6, 60, "six kubelet relists")
        async with CriClient(str(kube_node.cri_socket), timeout=30) as kubelets:
            theirs = {s.id for s in await kubelets.list_pod_sandboxes()}
        assert sandbox not in theirs
        ours = {s.id: s.state for s in await cri.list_pod_sandboxes()}
        assert ours.get(sandbox) == pb.SANDBOX_READY
    finally:
        await cri.stop_pod_sandbox(sandbox)
        await cri.remove_pod_sandbox(sandbox)
        remove_cgroups(config.linux.cgroup_parent)
