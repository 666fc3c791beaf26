"""The node test bed against the real runtime: containerd 2.x through CRI, runc, CRIU.

Acceptance of issue 3: a pod and the workload container created through CRI, a
``CheckpointContainer`` archive with the layout of TESTBED.md, and proof that both that archive
and a CRIU-only dump of the container's host PID (the agent's fallback) are real checkpoints: the
restored process continues from the checkpointed counter, not from zero and not from where the
original was when it was stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dynamo_snapshot.agent.cri.client import CriClient, CriDeadlineExceeded, CriNotFound, pb
from tests.node.conftest import NodeRuntime, Pod
from tests.node.support import (
    CGROUP_ROOT,
    PAUSE_IMAGE,
    WORKLOAD_IMAGE,
    Restored,
    build_rootfs,
    container_rss_kib,
    counters_in,
    criu_restore,
    describe,
    external_mounts,
    pid_alive,
    read_counter,
    run,
    tail,
)
from tests.support import wait_for

pytestmark = pytest.mark.node

# Memory the restore tests make the workload hold, to see it carried through the checkpoint.
TOUCH_MIB = 32

# What containerd 2.x writes into a CheckpointContainer archive (TESTBED.md).
ARCHIVE_ENTRIES = {
    "checkpoint",
    "config.dump",
    "spec.dump",
    "status.dump",
    "status",
    "stats-dump",
    "dump.log",
    "container.log",
    "rootfs-diff.tar",
}


async def _ready(pod: Pod) -> None:
    ready = pod.control_dir / "ready-for-snapshot"
    await wait_for(ready.exists, 30, "the workload's ready-for-snapshot")


async def _spec(cri: CriClient, container_id: str) -> dict[str, Any]:
    """The container's OCI runtime spec, from containerd's verbose status."""
    status = await cri.container_status(container_id, verbose=True)
    spec: dict[str, Any] = json.loads(status.info["info"])["runtimeSpec"]
    return spec


async def _stop_well_past(pod: Pod, cri: CriClient, container_id: str, pid: int, past: int) -> int:
    """Let the original run at least 5 ticks past ``past``, then remove it; return its last
    counter. A restored copy that printed values near ``past`` cannot then be the original."""
    await wait_for(lambda: read_counter(pod.control_dir) >= past + 5, 30, "counter to move on")
    await cri.stop_container(container_id, grace_period_s=0)
    await cri.remove_container(container_id)
    await wait_for(lambda: not pid_alive(pid), 30, f"original pid {pid} gone")
    return read_counter(pod.control_dir)


async def _assert_continues(
    restored: Restored,
    pod: Pod,
    cgroups_path: str,
    *,
    before: int,
    after: int,
    last_original: int,
) -> None:
    """The restored workload counts on from the checkpoint, keeps the control contract, and
    exits 0 when told the snapshot is complete."""
    freezer = CGROUP_ROOT / "freezer" / cgroups_path.lstrip("/")

    def counted() -> bool:
        if restored.criu.returncode is not None:
            raise AssertionError(f"restored tree ended early\n{describe(restored, freezer)}")
        return len(counters_in(restored.stdout.read_text())) >= 3

    try:
        await wait_for(counted, 30, "restored counter output")
    except pytest.fail.Exception:
        pytest.fail(f"no counter output from the restored tree\n{describe(restored, freezer)}")
    values = counters_in(restored.stdout.read_text())
    # The dump happened between reading `before` and `after`. The workload prints a value just
    # before publishing it to the file, so the first value printed after the restore is above
    # `before` and at most two ticks above `after`.
    assert before < values[0] <= after + 2, (before, values[:5], after)
    assert values[0] < last_original, "restored values come from the checkpoint"
    assert values == list(range(values[0], values[0] + len(values))), values
    assert pid_alive(restored.pid)
    # The touched memory came back too (CRIU restores every page before resuming).
    assert container_rss_kib(cgroups_path) >= TOUCH_MIB * 1024

    tmp = pod.control_dir / ".snapshot-complete.tmp"
    tmp.write_text("done\n")
    tmp.rename(pod.control_dir / "snapshot-complete")
    await wait_for(lambda: restored.criu.returncode is not None, 30, "restored workload exit")
    assert restored.criu.returncode == 0, describe(restored, freezer)
    final = re.search(r"snapshot-complete at counter (\d+)", restored.stdout.read_text())
    assert final, restored.stdout.read_text()[-500:]
    # The restored bind mount of the control volume is the pod's host directory again.
    assert read_counter(pod.control_dir) == int(final.group(1))


async def test_runtime_is_containerd_2_with_images(cri: CriClient) -> None:
    version = await cri.version()
    assert version.runtime_name == "containerd"
    assert int(version.runtime_version.split(".")[0]) >= 2, version.runtime_version
    assert version.runtime_api_version == "v1"
    for reference in (PAUSE_IMAGE, WORKLOAD_IMAGE):
        image = await cri.image_status(reference)
        assert image is not None, f"{reference} not loaded"
        assert reference in image.repo_tags
    assert await cri.image_status("localhost/dynamo-snapshot/absent:v0") is None


async def test_workload_keeps_the_control_volume_contract(pod: Pod, cri: CriClient) -> None:
    cid = await pod.start_workload()
    await _ready(pod)
    first = read_counter(pod.control_dir)
    await wait_for(lambda: read_counter(pod.control_dir) > first, 10, "counter to advance")
    # The same file seen from inside the container, through CRI ExecSync.
    inside = await cri.exec_sync(cid, ["cat", "/snapshot-control/counter"])
    assert inside.exit_code == 0
    assert int(inside.stdout) >= first
    assert [c.id for c in await cri.list_containers(sandbox_id=pod.sandbox_id)] == [cid]

    (pod.control_dir / "snapshot-complete").write_text("done\n")

    async def exited() -> pb.ContainerStatus | None:
        status = (await cri.container_status(cid)).status
        return status if status.state == pb.CONTAINER_EXITED else None

    status = await wait_for(exited, 30, "workload exit")
    assert status.exit_code == 0
    assert "snapshot-complete at counter" in pod.container_log()


async def test_workload_touches_requested_memory(pod: Pod, cri: CriClient) -> None:
    cid = await pod.start_workload({"WORKLOAD_TOUCH_MIB": "64"})
    await _ready(pod)
    spec = await _spec(cri, cid)
    assert container_rss_kib(spec["linux"]["cgroupsPath"]) >= 64 * 1024
    assert "touched 64 MiB" in pod.container_log()


async def test_checkpoint_of_unknown_container_is_not_found(cri: CriClient, tmp_path: Path) -> None:
    with pytest.raises(CriNotFound):
        await cri.checkpoint_container("0" * 64, str(tmp_path / "x.tar"), timeout=10)


async def test_checkpoint_is_bounded_by_the_grpc_deadline(
    pod: Pod, cri: CriClient, tmp_path: Path
) -> None:
    """containerd 2.1 ignores the request's own timeout: the client's gRPC deadline bounds it."""
    cid = await pod.start_workload({"WORKLOAD_TOUCH_MIB": "64"})
    await _ready(pod)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(CriDeadlineExceeded):
        await cri.checkpoint_container(cid, str(tmp_path / "late.tar"), timeout=0.05)
    assert loop.time() - start < 5
    # Left alone here: containerd 2.1.9 leaves the cancelled container paused (freezer FROZEN)
    # until it is killed; the pod fixture's StopPodSandbox kills it.


async def test_cri_checkpoint_archive_restores_and_continues(
    pod: Pod, cri: CriClient, node_runtime: NodeRuntime, criu: Path, tmp_path: Path
) -> None:
    cid = await pod.start_workload({"WORKLOAD_TOUCH_MIB": str(TOUCH_MIB)})
    await _ready(pod)
    pid = await cri.container_pid(cid)
    assert pid > 0

    archive = tmp_path / "checkpoint.tar"
    before = read_counter(pod.control_dir)
    await cri.checkpoint_container(cid, str(archive), timeout=120)
    after = read_counter(pod.control_dir)
    # The container keeps running after a CRI checkpoint.
    assert (await cri.container_status(cid)).status.state == pb.CONTAINER_RUNNING
    assert pid_alive(pid)

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        unpacked = tmp_path / "archive"
        tar.extractall(unpacked, filter="fully_trusted")
    assert {n.split("/")[0] for n in names} >= ARCHIVE_ENTRIES, sorted(set(names))
    for image in ("inventory.img", "pstree.img", "descriptors.json"):
        assert f"checkpoint/{image}" in names
    assert any(re.fullmatch(r"checkpoint/pages-\d+\.img", n) for n in names)
    spec = json.loads((unpacked / "spec.dump").read_text())
    assert spec["process"]["args"] == ["/usr/local/bin/workload"]
    assert "Dumping finished successfully" in (unpacked / "dump.log").read_text()
    # The log the archive carries ends at the checkpoint (printed one tick ahead of the file).
    archived = counters_in((unpacked / "container.log").read_text())
    assert archived
    assert max(archived) <= after + 1

    last = await _stop_well_past(pod, cri, cid, pid, after)
    rootfs = tmp_path / "rootfs"
    build_rootfs(
        rootfs,
        node_runtime.image_tarball(WORKLOAD_IMAGE),
        (unpacked / "rootfs-diff.tar").read_bytes(),
    )
    descriptors = json.loads((unpacked / "checkpoint" / "descriptors.json").read_text())
    async with criu_restore(
        criu, unpacked / "checkpoint", rootfs, spec, descriptors, tmp_path
    ) as restored:
        await _assert_continues(
            restored,
            pod,
            spec["linux"]["cgroupsPath"],
            before=before,
            after=after,
            last_original=last,
        )


def _upperdir(pid: int) -> Path:
    """The overlay upper directory of the container's root (its filesystem changes)."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        if left.split()[4] == "/" and right.startswith("overlay "):
            options = right.split()[2].split(",")
            return Path(next(o for o in options if o.startswith("upperdir=")).split("=", 1)[1])
    raise AssertionError(f"no overlay root for pid {pid}")


async def test_criu_dump_of_host_pid_restores_and_continues(
    pod: Pod, cri: CriClient, node_runtime: NodeRuntime, criu: Path, tmp_path: Path
) -> None:
    """The agent's fallback: CRIU on the container's host PID, outside the runtime."""
    cid = await pod.start_workload({"WORKLOAD_TOUCH_MIB": str(TOUCH_MIB)})
    await _ready(pod)
    pid = await cri.container_pid(cid)
    spec = await _spec(cri, cid)
    cgroups_path = spec["linux"]["cgroupsPath"]
    # What runc records as descriptors.json: the resources behind fds 0-2.
    descriptors = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in range(3)]
    images = tmp_path / "images"
    images.mkdir()
    diff = tmp_path / "rootfs-diff.tar"
    with tarfile.open(diff, "w") as tar:
        tar.add(_upperdir(pid), arcname=".")

    cmd = [
        str(criu),
        "dump",
        "--tree",
        str(pid),
        "--images-dir",
        str(images),
        "--log-file",
        str(images / "dump.log"),
        "-v4",
        "--leave-running",
        "--tcp-established",
        "--file-locks",
        "--ext-unix-sk",
        "--link-remap",
        "--manage-cgroups=soft",
        "--freeze-cgroup",
        f"/sys/fs/cgroup/freezer/{cgroups_path.lstrip('/')}",
    ]
    # Host-network pod: its network namespace is CRIU's own, so nothing to mark external there.
    for key in external_mounts(spec):
        cmd += ["--external", f"mnt[{key}]:{key}"]
    before = read_counter(pod.control_dir)
    rc, _ = await run(*cmd, check=False)
    after = read_counter(pod.control_dir)
    assert rc == 0, tail(images / "dump.log")
    assert "Dumping finished successfully" in (images / "dump.log").read_text()
    assert (await cri.container_status(cid)).status.state == pb.CONTAINER_RUNNING
    assert pid_alive(pid), "--leave-running keeps the original"

    last = await _stop_well_past(pod, cri, cid, pid, after)
    rootfs = tmp_path / "rootfs"
    build_rootfs(rootfs, node_runtime.image_tarball(WORKLOAD_IMAGE), diff.read_bytes())
    async with criu_restore(criu, images, rootfs, spec, descriptors, tmp_path) as restored:
        await _assert_continues(
            restored,
            pod,
            spec["linux"]["cgroupsPath"],
            before=before,
            after=after,
            last_original=last,
        )
