"""Two agents racing for one work order, and an agent killed with SIGKILL in the middle of a dump.

Both on the real apiserver and the private containerd: the Lease per checkpoint ID makes one
dump out of two agents, and a restarted agent converges (the dead holder's Lease expires, its
staging directory is removed, the container it left frozen is thawed, the dump is redone) with
nothing partial ever at the final path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamo_snapshot.agent import artifact
from dynamo_snapshot.agent.capture import CONTENTS
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import Manager
from tests.integration.agent.conftest import Bed, RunAgent, agent_config, terminal_condition
from tests.integration.agent.kubelet import NODE_NAME, PlayedPod
from tests.support import wait_for

pytestmark = pytest.mark.node


def _captures(mgr: Manager, method: str) -> float:
    value = mgr.metrics.registry.get_sample_value(
        "dynamo_snapshot_capture_duration_seconds_count", {"method": method, "result": "success"}
    )
    return value or 0.0


async def test_two_agents_on_one_node_make_one_dump(
    bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    async with (
        run_agent(identity="snapshot-agent/racer-a") as (mgr_a, _a),
        run_agent(identity="snapshot-agent/racer-b") as (mgr_b, _b),
        bed.pod(checkpoint_id="race") as pod,
    ):
        content = await bed.order(pod)
        cond = await bed.terminal(content, 90)
        assert cond["reason"] == c.REASON_CAPTURED
        await wait_for(pod.exited, 30, "workload exit")
        assert await pod.exit_code() == 0
        # Both agents had the work order; only one dumped. (A capture is counted when its task
        # ends, after the sentinel and the Lease's release: the workload may exit before.)
        await wait_for(
            lambda: _captures(mgr_a, "criu") + _captures(mgr_b, "criu") >= 1.0,
            30,
            "the capture counted",
        )
        assert _captures(mgr_a, "criu") + _captures(mgr_b, "criu") == 1.0
    versions = storage_root / "race" / "versions"
    assert sorted(os.listdir(versions)) == ["1", "tmp"]
    assert os.listdir(versions / "tmp") == []
    artifact.verify(versions / "1", full=True)


def _frozen_containers(pod: PlayedPod) -> list[str]:
    """Frozen container cgroups of the pod (not the whole test bed's: another test session on
    this machine may be dumping a container of its own under the same parent right now)."""
    assert pod.sandbox_config is not None
    root = Path("/sys/fs/cgroup/freezer") / pod.sandbox_config.linux.cgroup_parent.lstrip("/")
    out = []
    for state in root.glob("*/freezer.state"):
        try:
            if state.read_text().strip() != "THAWED":
                out.append(str(state.parent))
        except OSError:
            continue
    return out


def _start_agent(kubeconfig: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dynamo_snapshot.cmd.agent",
                "--kubeconfig",
                str(kubeconfig),
                "--config",
                str(config),
                "--metrics-bind-address",
                "0",
                "--health-probe-bind-address",
                "0",
                "--log-format",
                "text",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "NODE_NAME"},
        )


async def test_kill_9_during_a_dump_then_restart_converges(
    bed: Bed,
    kube_cluster: Any,
    cri_endpoint: str,
    criu: Path,
    storage_root: Path,
    tmp_path: Path,
) -> None:
    cfg = agent_config(
        cri_endpoint,
        criu,
        storage_root,
        method="cri",
        lease_duration_seconds=4.0,
        lease_renew_seconds=1.0,
    )
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nodeName": NODE_NAME,
                "runtimeEndpoint": cfg.runtime_endpoint,
                "storageRoot": cfg.storage_root,
                "criuPath": cfg.criu_path,
                "method": "cri",
                "fsync": False,
                "leaseDurationSeconds": 4,
                "leaseRenewSeconds": 1,
            }
        )
    )
    log = tmp_path / "agent.log"
    first = _start_agent(kube_cluster.kubeconfig, config, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        async with bed.pod(touch_mib=384, checkpoint_id="killed") as pod:
            content = await bed.order(pod)
            name = content["metadata"]["name"]
            staging = storage_root / "killed" / "versions" / "tmp"
            await wait_for(
                lambda: staging.is_dir() and any(staging.iterdir()), 90, "the first dump started"
            )
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            assert await terminal_condition(bed.api, name) is None
            final = storage_root / "killed" / "versions" / "1"
            assert not final.exists()

            second = _start_agent(kube_cluster.kubeconfig, config, log)
            cond = await bed.terminal(content, 120)
            assert cond["reason"] == c.REASON_CAPTURED, (cond, log.read_text()[-3000:])
            manifest = artifact.verify(final, full=True)
            assert manifest["method"] == "cri"
            assert os.listdir(staging) == [], "the dead agent's staging was removed"
            await wait_for(pod.exited, 30, "workload exit")
            assert await pod.exit_code() == 0
            assert _frozen_containers(pod) == []
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


async def test_ready_without_sentinel_is_released_after_a_restart(
    bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    """An agent persisted Ready and died before writing snapshot-complete: the next agent
    writes it (without dumping again) and the workload exits 0."""
    async with bed.pod(checkpoint_id="rerelease") as pod:
        await wait_for(
            (pod.control_dir / c.READY_FOR_SNAPSHOT_FILE).exists, 30, "ready-for-snapshot"
        )
        content = await bed.order(pod)
        name = content["metadata"]["name"]
        when = "2026-01-01T00:00:00Z"
        conditions = [
            {"type": t, "status": s, "reason": c.REASON_CAPTURED, "message": "earlier agent",
             "lastTransitionTime": when}
            for t, s in ((c.CONDITION_READY, "True"), (c.CONDITION_FAILED, "False"))
        ]  # fmt: skip
        await bed.api.patch_status(CONTENTS, name, {"status": {"conditions": conditions}})
        assert not (pod.control_dir / c.SNAPSHOT_COMPLETE_FILE).exists()
        async with run_agent():
            await wait_for(pod.exited, 60, "workload released and exited")
        assert await pod.exit_code() == 0
        assert (pod.control_dir / c.SNAPSHOT_COMPLETE_FILE).exists()
    assert os.listdir(storage_root) == [], "released without a second dump"
