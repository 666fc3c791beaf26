"""The test bed's kubelet-shaped configs: one definition of the pod the agent is tested against."""

from __future__ import annotations

from pathlib import Path

from dynamo_snapshot.agent.cri.client import pb
from dynamo_snapshot.agent.cri.podconfig import (
    CGROUP_PARENT,
    CONTROL_DIR,
    WORKLOAD_IMAGE,
    sandbox_config,
    workload_config,
)


def test_sandbox_is_host_network_under_our_cgroup_parent(tmp_path: Path) -> None:
    cfg = sandbox_config("p", tmp_path, namespace="ns", uid="u1", labels={"x": "y"})
    assert (cfg.metadata.name, cfg.metadata.namespace, cfg.metadata.uid) == ("p", "ns", "u1")
    assert cfg.linux.cgroup_parent == f"{CGROUP_PARENT}/podu1"
    assert cfg.linux.security_context.namespace_options.network == pb.NODE
    assert cfg.log_directory == str(tmp_path)
    assert cfg.labels["x"] == "y"
    assert cfg.labels["io.kubernetes.pod.uid"] == "u1"


def test_two_sandboxes_get_distinct_uids(tmp_path: Path) -> None:
    assert sandbox_config("a", tmp_path).metadata.uid != sandbox_config("a", tmp_path).metadata.uid


def test_workload_mounts_the_control_dir_and_takes_env_overrides(tmp_path: Path) -> None:
    cfg = workload_config(tmp_path, env={"WORKLOAD_TOUCH_MIB": "8"}, tick_seconds=0.2)
    assert cfg.image.image == WORKLOAD_IMAGE
    assert [(m.container_path, m.host_path) for m in cfg.mounts] == [(CONTROL_DIR, str(tmp_path))]
    envs = {e.key: e.value for e in cfg.envs}
    assert envs["DYN_SNAPSHOT_CONTROL_DIR"] == CONTROL_DIR
    assert envs["WORKLOAD_TICK_SECONDS"] == "0.2"
    assert envs["WORKLOAD_TOUCH_MIB"] == "8"
    assert cfg.metadata.name == "main"
    assert cfg.log_path == "main.log"
