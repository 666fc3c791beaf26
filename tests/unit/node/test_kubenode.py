"""What hack/kubenode.py refuses before it starts anything."""

from __future__ import annotations

from pathlib import Path

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
