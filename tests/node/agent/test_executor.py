"""The capture executor against the real runtime: containerd 2.x through CRI, runc, CRIU.

Each method dumps a running workload into a final artifact directory; the artifact is then read
by an independent tool (checkpointctl for the CRI archive, crit for CRIU images) and restored
with CRIU, and the restored counter must continue from the checkpointed value. The failure paths
use real faults: a gRPC deadline shorter than the dump, a storage root too small for the
container's filesystem changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dynamo_snapshot.agent import artifact
from dynamo_snapshot.agent.container import ContainerFacts, resolve
from dynamo_snapshot.agent.cri.client import CriClient, pb
from dynamo_snapshot.agent.executor import (
    CaptureFailed,
    CaptureRequest,
    Executor,
    ExecutorConfig,
    Method,
)
from dynamo_snapshot.agent.freezer import freezer_file, is_frozen
from dynamo_snapshot.agent.paths import Destination, resolve_destination
from dynamo_snapshot.agent.phases import Phases
from tests.node.conftest import NodeRuntime, Pod
from tests.node.support import (
    CGROUP_ROOT,
    WORKLOAD_IMAGE,
    build_rootfs,
    criu_restore,
    read_counter,
    run,
)
from tests.node.test_runtime import TOUCH_MIB, _assert_continues, _stop_well_past
from tests.support import wait_for

READERS = Path(__file__).with_name("readers.sh")


@pytest.fixture(scope="session")
def readers() -> dict[str, str]:
    """checkpointctl and crit, unpacked privately (tests/node/agent/readers.sh)."""
    out = subprocess.run([str(READERS)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "storage"
    r.mkdir(mode=0o700)
    return r


def _executor(
    cri: CriClient,
    criu: Path,
    root: Path,
    method: Method,
    *,
    cuda_checkpoint: str | None = None,
    checkpoint_timeout_s: float = 120.0,
) -> Executor:
    cfg = ExecutorConfig(
        storage_root=root,
        method=method,
        criu_path=str(criu),
        cuda_checkpoint=cuda_checkpoint,
        checkpoint_timeout_s=checkpoint_timeout_s,
    )
    return Executor(cri, cfg)


def _request(pod: Pod, facts: ContainerFacts) -> CaptureRequest:
    meta = pod.config.metadata
    return CaptureRequest(meta.namespace, meta.name, meta.uid, "test-node", facts)


async def _ready(pod: Pod, cri: CriClient, touch_mib: int = TOUCH_MIB) -> ContainerFacts:
    cid = await pod.start_workload({"WORKLOAD_TOUCH_MIB": str(touch_mib)})
    await wait_for((pod.control_dir / "ready-for-snapshot").exists, 30, "ready-for-snapshot")
    return await resolve(cri, cid)


def _assert_artifact(dest: Destination, method: str) -> dict[str, Any]:
    final = dest.final
    manifest = artifact.verify(final, full=True)
    assert manifest["method"] == method
    assert manifest["checkpointID"] == dest.checkpoint_id
    assert set(manifest["phases"]) >= {"dump", "digest"}
    for dirpath, _dirs, files in os.walk(final):
        assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
        for f in files:
            assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600, f
    assert list(dest.staging_parent.iterdir()) == [], "staging left behind"
    return manifest


def _processes_using(directory: Path) -> list[str]:
    """Processes whose working directory or open files are under `directory` (from /proc)."""
    prefix = str(directory)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = [proc / "cwd", *(proc / "fd").iterdir()]
            if any(os.readlink(link).startswith(prefix) for link in links):
                found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
    return found


def _thawed(facts: ContainerFacts) -> bool:
    state = freezer_file(CGROUP_ROOT, facts.cgroups_path)
    assert state is not None, f"no freezer cgroup for {facts.cgroups_path}"
    return not is_frozen(state)


CUDA_STAND_IN = """#!/bin/sh
# stand-in for NVIDIA's cuda-checkpoint (no GPU here): the workload's init is "a CUDA process"
echo "$*" >>"$(dirname "$0")/calls"
case "$1" in
  --get-state) [ "$3" = "$(cat "$(dirname "$0")/cuda-pid")" ] && echo running && exit 0; exit 1 ;;
esac
exit 0
"""


async def test_criu_method_artifact_is_read_by_crit_and_restores(
    pod: Pod,
    cri: CriClient,
    node_runtime: NodeRuntime,
    criu: Path,
    root: Path,
    tmp_path: Path,
    readers: dict[str, str],
) -> None:
    facts = await _ready(pod, cri)
    # The optional GPU step runs against a stand-in named like the real tool.
    stand_in = tmp_path / "gpu" / "cuda-checkpoint"
    stand_in.parent.mkdir()
    stand_in.write_text(CUDA_STAND_IN)
    stand_in.chmod(0o755)
    (stand_in.parent / "cuda-pid").write_text(str(facts.pid))
    executor = _executor(cri, criu, root, "criu", cuda_checkpoint=str(stand_in))
    dest = resolve_destination(root, None, "ckpt-criu", "1")
    before = read_counter(pod.control_dir)
    result = await executor.capture(_request(pod, facts), dest, Phases())
    after = read_counter(pod.control_dir)

    assert result.method == "criu"
    manifest = _assert_artifact(dest, "criu")
    options = manifest["criu"]["options"]
    for option in ("--leave-running", "--tcp-established", "--manage-cgroups=soft", "-v4"):
        assert option in options
    names = {f["path"] for f in manifest["files"]}
    assert {"rootfs-diff.tar", "deleted.files", "spec.dump", "checkpoint/pstree.img"} <= names
    assert (await cri.container_status(facts.container_id)).status.state == pb.CONTAINER_RUNNING
    assert _thawed(facts)
    calls = (stand_in.parent / "calls").read_text().splitlines()
    assert [c for c in calls if c.startswith("--action")] == [
        f"--action {a} --pid {facts.pid}" for a in ("lock", "checkpoint", "restore", "unlock")
    ]

    # An independent reader decodes the images.
    _rc, shown = await run(readers["CRIT"], "show", str(dest.final / "checkpoint" / "pstree.img"))
    assert json.loads(shown)["entries"][0]["pid"] > 0

    last = await _stop_well_past(pod, cri, facts.container_id, facts.pid, after)
    rootfs = tmp_path / "rootfs"
    build_rootfs(
        rootfs,
        node_runtime.image_tarball(WORKLOAD_IMAGE),
        (dest.final / "rootfs-diff.tar").read_bytes(),
    )
    spec = json.loads((dest.final / "spec.dump").read_text())
    descriptors = json.loads((dest.final / "checkpoint" / "descriptors.json").read_text())
    async with criu_restore(
        criu, dest.final / "checkpoint", rootfs, spec, descriptors, tmp_path
    ) as restored:
        await _assert_continues(
            restored,
            pod,
            facts.cgroups_path,
            before=before,
            after=after,
            last_original=last,
        )


async def test_cri_method_archive_is_read_by_checkpointctl_and_restores(
    pod: Pod,
    cri: CriClient,
    node_runtime: NodeRuntime,
    criu: Path,
    root: Path,
    tmp_path: Path,
    readers: dict[str, str],
) -> None:
    facts = await _ready(pod, cri)
    executor = _executor(cri, criu, root, "cri")
    dest = resolve_destination(root, None, "ckpt-cri", "3")
    before = read_counter(pod.control_dir)
    result = await executor.capture(_request(pod, facts), dest, Phases())
    after = read_counter(pod.control_dir)

    assert result.method == "cri"
    manifest = _assert_artifact(dest, "cri")
    assert [f["path"] for f in manifest["files"]] == ["checkpoint.tar"]
    assert _thawed(facts)
    archive = dest.final / "checkpoint.tar"
    _rc, shown = await run(readers["CHECKPOINTCTL"], "inspect", "--ps-tree", str(archive))
    assert "workload" in shown, shown

    unpacked = tmp_path / "archive"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="fully_trusted")
    last = await _stop_well_past(pod, cri, facts.container_id, facts.pid, after)
    rootfs = tmp_path / "rootfs"
    build_rootfs(
        rootfs,
        node_runtime.image_tarball(WORKLOAD_IMAGE),
        (unpacked / "rootfs-diff.tar").read_bytes(),
    )
    spec = json.loads((unpacked / "spec.dump").read_text())
    descriptors = json.loads((unpacked / "checkpoint" / "descriptors.json").read_text())
    async with criu_restore(
        criu, unpacked / "checkpoint", rootfs, spec, descriptors, tmp_path
    ) as restored:
        await _assert_continues(
            restored,
            pod,
            facts.cgroups_path,
            before=before,
            after=after,
            last_original=last,
        )


async def test_cri_deadline_leaves_the_container_running_not_frozen(
    pod: Pod, cri: CriClient, criu: Path, root: Path
) -> None:
    """containerd 2.1.9 leaves a task frozen when its CheckpointContainer is cancelled by the
    gRPC deadline: the executor thaws it, and nothing appears at the final path."""
    facts = await _ready(pod, cri, touch_mib=64)
    executor = _executor(cri, criu, root, "cri", checkpoint_timeout_s=0.05)
    dest = resolve_destination(root, None, "ckpt-late", "1")
    with pytest.raises(CaptureFailed, match="did not finish within"):
        await executor.capture(_request(pod, facts), dest, Phases())
    assert _thawed(facts)
    assert not dest.final.exists()
    assert list(dest.staging_parent.iterdir()) == []
    # The workload keeps counting: it is really running, not frozen.
    now = read_counter(pod.control_dir)
    await wait_for(lambda: read_counter(pod.control_dir) > now + 2, 15, "counter to advance")
    assert (await cri.container_status(facts.container_id)).status.state == pb.CONTAINER_RUNNING


async def test_a_failed_rootfs_diff_fails_the_capture(
    pod: Pod, cri: CriClient, criu: Path, tmp_path: Path
) -> None:
    """A storage root with room for CRIU's images but not for the container's 48 MiB of
    filesystem changes: the diff fails with ENOSPC and the capture must fail with it."""
    facts = await _ready(pod, cri, touch_mib=0)
    wrote = await cri.exec_sync(
        facts.container_id, ["dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=48"], timeout_s=60
    )
    assert wrote.exit_code == 0, wrote.stderr
    small = tmp_path / "small"
    small.mkdir()
    await run("mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(small))
    try:
        executor = _executor(cri, criu, small, "criu")
        dest = resolve_destination(small, None, "ckpt-full", "1")
        with pytest.raises(CaptureFailed, match="No space left"):
            await executor.capture(_request(pod, facts), dest, Phases())
        assert not dest.final.exists()
        assert list(dest.staging_parent.iterdir()) == []
        assert _thawed(facts)
        # The dump was cancelled when the diff failed: no CRIU (nor a child it forked) may live
        # on. The group is sent SIGKILL and CRIU itself reaped; a child may take a moment more
        # to finish dying on a loaded machine.
        await wait_for(lambda: _processes_using(small) == [], 10, f"nothing left using {small}")
    finally:
        await run("umount", str(small), check=False)
