"""What hack/kubenode.py refuses before it starts anything, and what it takes for Ready."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from controlplane import ControlPlane
from kubenode import KubeNode, NodeError


def test_a_directory_too_long_for_the_kubelets_sockets_is_refused_by_name(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / "cluster"
    node = KubeNode.of(ControlPlane(dir=deep))
    with pytest.raises(NodeError, match="too long for the kubelet's unix sockets"):
        node.up()
    assert not node.dir.exists()


def test_no_control_plane_is_a_clear_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    node = KubeNode.of(ControlPlane(dir=tmp_path_factory.mktemp("c")))
    with pytest.raises(NodeError, match="no running control plane"):
        node.up()


@attrs.define
class _ApiserverStandIn(ControlPlane):
    """A STAND-IN apiserver that answers every GET with one Node whose Ready condition has
    `heartbeat` as its lastHeartbeatTime (a stale Node is a state no fresh cluster has)."""

    heartbeat: str = ""

    def request(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> dict[str, object]:
        ready = {"type": "Ready", "status": "True", "lastHeartbeatTime": self.heartbeat}
        return {"metadata": {"name": path.rsplit("/", 1)[-1]}, "status": {"conditions": [ready]}}


def test_a_ready_node_of_an_earlier_kubelet_is_not_taken_for_the_new_one(tmp_path: Path) -> None:
    cluster = _ApiserverStandIn(dir=tmp_path, heartbeat="2026-12-02T03:04:05Z")
    node = KubeNode.of(cluster)
    started = 1796180645  # 2026-12-02T03:04:05Z: the earlier kubelet's heartbeat, same second
    assert node.ready()
    assert not node.ready(after_second=started)
    cluster.heartbeat = "2026-12-02T03:04:06Z"
    assert node.ready(after_second=started)
