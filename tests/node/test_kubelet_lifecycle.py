"""`up` reuses a Ready node, and `down` leaves nothing of it on the host: no process, mount,
cgroup, interface or log link, and the host's sysctls and paths as they were."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from kubenode import TEST_TOLERATION, KubeNode
from nodehost import HOST_PATHS, Registry, read_sysctls

from tests.node.support import WORKLOAD_IMAGE, pid_alive
from tests.support import wait_for


def _host() -> tuple[dict[str, str], dict[str, bool]]:
    return read_sysctls(), {p: os.path.lexists(p) for p in HOST_PATHS}


def _processes_naming(path: Path) -> list[int]:
    """Processes whose command line names something under `path` (kubelet, containerd, shims)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _has_interface(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _log_links_into(path: Path) -> list[Path]:
    links = Path("/var/log/containers")
    if not links.is_dir():
        return []
    found = []
    for p in links.iterdir():
        # The session's own node (kube_node) runs meanwhile: its kubelet may remove a link of
        # its own between the listing and the readlink.
        with contextlib.suppress(OSError):
            if str(path) in os.readlink(p):
                found.append(p)
    return found


def _cgroup_pids(node: KubeNode) -> set[int]:
    top = Path("/sys/fs/cgroup/pids") / node.paths.cgroup_root
    return {int(p) for f in top.rglob("cgroup.procs") for p in f.read_text().split()}


async def test_up_reuses_and_down_leaves_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A short directory: the kubelet's unix sockets live under it (107 bytes at most).
    tmp_path = tmp_path_factory.mktemp("life")
    registry = Registry()
    others_before = {n for n, d in registry.entries().items()}
    sysctls_before, paths_before = _host()
    cluster = ControlPlane(dir=tmp_path / "cluster")
    node: KubeNode | None = None
    try:
        cluster.up()
        node = KubeNode.of(cluster)
        node.up()
        pid = node.pid()
        assert pid is not None

        again = KubeNode.of(ControlPlane.load(cluster.dir))
        again.up()
        assert (again.name, again.pid()) == (node.name, pid)

        # A pod with everything a pod leaves on a host: a network namespace on the CNI bridge,
        # a projected token (tmpfs mount), an emptyDir, cgroups and a log link.
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "leaves-traces", "namespace": "default"},
            "spec": {
                "tolerations": [TEST_TOLERATION],
                "containers": [
                    {"name": "main", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never"}
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

        def running() -> dict[str, Any] | None:
            got = json.loads(cluster.kubectl("get", "pod", "leaves-traces", "-o", "json").stdout)
            return got if got["status"].get("phase") == "Running" else None

        await wait_for(running, 60, "the pod running", interval=0.3)
        assert node.paths.leftovers(), "a running node shows its processes, mounts, cgroups"
        assert _has_interface(node.paths.bridge)
        container_pids = _cgroup_pids(node)
        assert container_pids
        assert registry.index_of(node.dir) == node.index
    finally:
        problems = KubeNode.of(ControlPlane.load(cluster.dir)).down()
        cluster.down()

    assert problems == []
    assert node.paths.leftovers() == []
    assert _processes_naming(tmp_path) == []
    assert [p for p in container_pids if pid_alive(p)] == []
    assert registry.index_of(node.dir) is None
    assert _log_links_into(node.dir) == []
    if {n for n in registry.entries()} == others_before:
        # No other node of ours came or went meanwhile: the host is exactly as before.
        assert _host() == (sysctls_before, paths_before)
