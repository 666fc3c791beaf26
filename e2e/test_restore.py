"""The artifact is a real checkpoint: CRIU on the node restores it and the workload's counter
continues from where it was dumped, not from 1.

The restore mirrors what runc does (tests/node/support.py: criu_restore): the root filesystem
rebuilt from the workload image plus the artifact's rootfs diff, every bind mount of the container
mapped to a host path, and the process tree in a cgroup of the test's own. It waits until the
Job's pod is gone, as a restore elsewhere would find it; the pod's mounts (hosts file, token,
shm, ...) went with it, so each gets a fresh stand-in, and the control volume a directory this
test reads. The workload runs on the host network, as many inference pods do, so no pod network
namespace has to be recreated.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from e2e import flow
from e2e.conftest import CAPTURE_TIMEOUT, REPO, Env
from e2e.deploy import Kubectl
from e2e.support import wait_for
from tests.node.support import (
    CGROUP_ROOT,
    CONTROL_DIR,
    build_rootfs,
    counters_in,
    criu_restore,
    describe,
    host_cgroup_mounts,
    tail,
)

WARMUP_TICKS = 50  # 2.5 s at 0.05 s a tick: a fresh start could not be this far in a moment
FILE_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log")


def _workload_tarball() -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "hack/images/build-images.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith(flow.WORKLOAD_IMAGE + " "))
    return Path(line.split()[1])


def _stand_in_mounts(spec: dict[str, Any], control: Path, workdir: Path) -> None:
    """Point each bind mount at a stand-in (in place): their sources went with the pod."""
    for i, m in enumerate(spec.get("mounts", [])):
        options = m.get("options") or []
        if not (m.get("type") == "bind" or "bind" in options or "rbind" in options):
            continue
        if m["destination"] == CONTROL_DIR:
            m["source"] = str(control)
        else:  # every source was the pod's own (hosts, token, shm, ...): gone or going
            stand_in = workdir / "mounts" / str(i)
            stand_in.parent.mkdir(exist_ok=True)
            if m["destination"] in FILE_MOUNTS:
                stand_in.write_text("")
            else:
                stand_in.mkdir()
            m["source"] = str(stand_in)


def _make_cgroups(relative: str) -> list[Path]:
    """The pod's cgroups went with it; CRIU restores into cgroups at the dumped paths. Made here
    (a new cpuset starts empty: it takes its parent's CPUs and memory nodes), removed after."""
    made = []
    for hierarchy in host_cgroup_mounts():
        current = hierarchy
        for part in relative.strip("/").split("/"):
            parent, current = current, current / part
            if current.exists():
                continue
            current.mkdir()
            made.append(current)
            if hierarchy.name == "cpuset":
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (current / f).write_text((parent / f).read_text())
    return made


async def _restore_and_watch(
    criu: Path, images: Path, rootfs: Path, spec: Mapping[str, Any], workdir: Path
) -> list[int]:
    descriptors = json.loads((images / "descriptors.json").read_text())
    async with criu_restore(criu, images, rootfs, spec, descriptors, workdir) as restored:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(counters_in(tail(restored.stdout))) < 5:
            if restored.criu.returncode is not None or loop.time() > deadline:
                freezer = CGROUP_ROOT / "freezer" / str(spec["linux"]["cgroupsPath"]).lstrip("/")
                raise AssertionError(
                    f"restored workload did not count:\n{describe(restored, freezer)}"
                )
            await asyncio.sleep(0.1)
        return counters_in(tail(restored.stdout))


def test_artifact_restores_with_criu_and_the_counter_continues(
    env: Env, namespace: str, tmp_path: Path
) -> None:
    if env.deployed.node is None:
        pytest.skip("the restore check runs CRIU on the local cluster's node (this machine)")
    kubectl = Kubectl(env.cluster.kubeconfig)
    name = f"restore-{uuid.uuid4().hex[:6]}"
    manifest = flow.checkpoint_manifest(
        name,
        env={"WORKLOAD_WARMUP_TICKS": str(WARMUP_TICKS), "WORKLOAD_TICK_SECONDS": "0.05"},
    )
    manifest["spec"]["job"]["podTemplateSpec"]["spec"]["hostNetwork"] = True
    env.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    watch = flow.wait_terminal(kubectl, namespace, name, CAPTURE_TIMEOUT)
    assert watch.phase == "Ready", flow.failed_summary(watch.checkpoint)
    # Restore once the Job's pod is gone, as a restore on another node would: nothing of it left.
    job = watch.status["jobName"]
    wait_for(
        f"the pods of Job {job} to be gone",
        lambda: (
            not kubectl.json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]
            or None
        ),
        timeout=120,
    )
    artifact = Path(env.storage_root) / watch.status["checkpointID"] / "versions" / "1"
    meta = json.loads((artifact / "manifest.json").read_text())

    if meta["method"] == "cri":
        unpacked = tmp_path / "archive"
        with tarfile.open(artifact / "checkpoint.tar") as tar:
            tar.extractall(unpacked, filter="fully_trusted")
    else:
        unpacked = artifact
    spec = json.loads((unpacked / "spec.dump").read_text())
    control = tmp_path / "control"
    control.mkdir()
    _stand_in_mounts(spec, control, tmp_path)
    rootfs = tmp_path / "rootfs"
    build_rootfs(rootfs, _workload_tarball(), (unpacked / "rootfs-diff.tar").read_bytes())
    # Restore under a cgroup of our own: the kubelet kills whatever runs in the cgroup of a pod
    # it no longer knows, and the Job's pod is being torn down by now.
    cgroup = f"/dynamo-snapshot-e2e-restore-{uuid.uuid4().hex[:8]}"
    spec["linux"]["cgroupsPath"] = cgroup
    made = _make_cgroups(cgroup)
    criu = tmp_path / "criu"
    criu.write_text(
        f'#!/bin/sh\nexec {env.deployed.node.ctr.parent / "criu"} "$@" --cgroup-root {cgroup}\n'
    )
    criu.chmod(0o755)
    try:
        counters = asyncio.run(
            _restore_and_watch(criu, unpacked / "checkpoint", rootfs, spec, tmp_path)
        )
    finally:
        for p in sorted(made, key=lambda p: len(p.parts), reverse=True):
            if p.exists():
                os.rmdir(p)
    # The first count after the restore continues the dumped process: past the warm-up (a fresh
    # start prints 1), and it keeps counting one by one.
    assert counters[0] > WARMUP_TICKS, counters
    assert counters == list(range(counters[0], counters[0] + len(counters))), counters
