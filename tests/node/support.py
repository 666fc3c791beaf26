"""Helpers of the node tests: the workload's observable state and a CRIU restore of a dumped
container (what proves a checkpoint is real). The pod and container configs are
``dynamo_snapshot.agent.cri.podconfig``'s, shared with the demo; they are re-exported here.

Restore is done with CRIU directly (TESTBED.md: containerd 2.1.9's own restore first re-pulls the
checkpoint's base image by reference, which fails for a locally imported image). It mirrors what
runc does on restore: a root filesystem rebuilt from the image layer plus the container's
changes, every bind mount of the container mapped back to its host source, and the container's
stdout/stderr pipes replaced by files the test reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import subprocess
import tarfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo_snapshot.agent import criu as agent_criu
from dynamo_snapshot.agent.cri.podconfig import (
    CGROUP_PARENT,
    CONTROL_DIR,
    PAUSE_IMAGE,
    WORKLOAD_IMAGE,
    sandbox_config,
    workload_config,
)

__all__ = [
    "CGROUP_PARENT",
    "CONTROL_DIR",
    "PAUSE_IMAGE",
    "WORKLOAD_IMAGE",
    "sandbox_config",
    "workload_config",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def read_counter(control_dir: Path) -> int:
    """The workload's last published counter (0 before its first tick)."""
    try:
        return int((control_dir / "counter").read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def counters_in(text: str) -> list[int]:
    """The values of the workload's `counter N` lines (CRI log lines carry a prefix)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-2] == "counter" and parts[-1].isdigit():
            out.append(int(parts[-1]))
    return out


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def remove_cgroups(relative: str) -> None:
    """rmdir a cgroup path (and its children) in every v1 hierarchy; runc leaves pod levels."""
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / relative.lstrip("/")
        if not top.is_dir() or hierarchy.is_symlink():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def tail(path: Path, limit: int = 4000) -> str:
    """The end of a text file, or "" while it does not exist (logs written by other processes)."""
    try:
        return path.read_text()[-limit:]
    except FileNotFoundError:
        return ""


def thaw(freezer_cgroup: Path) -> None:
    state = freezer_cgroup / "freezer.state"
    if state.exists() and state.read_text().strip() != "THAWED":
        state.write_text("THAWED")


def vm_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}: {status}")


def container_rss_kib(cgroups_path: str) -> int:
    """Resident memory of every process of a container, found through its cgroup (v1, pids)."""
    procs = CGROUP_ROOT / "pids" / cgroups_path.lstrip("/") / "cgroup.procs"
    return sum(vm_rss_kib(int(pid)) for pid in procs.read_text().split())


async def run(*cmd: str, check: bool = True) -> tuple[int, str]:
    """Run a command without blocking the event loop; return its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    rc = proc.returncode if proc.returncode is not None else -1
    if check and rc != 0:
        raise AssertionError(f"{' '.join(cmd)} failed (rc {rc}): {out.decode(errors='replace')}")
    return rc, out.decode(errors="replace")


# ---- restore ----


def host_cgroup_mounts() -> list[Path]:
    """Mount points of the host's cgroup hierarchies under /sys/fs/cgroup."""
    return agent_criu.cgroup_mounts(CGROUP_ROOT)


def external_mounts(spec: Mapping[str, Any]) -> dict[str, str]:
    """Container mount point → host path of every mount CRIU must treat as external: the
    agent's own map (the keys are what runc uses when it dumps, so it serves a runc/CRI
    checkpoint and our own CRIU dump alike), over this host's cgroup hierarchies."""
    return agent_criu.external_mounts(spec, host_cgroup_mounts())


def image_layer(image_tarball: Path) -> bytes:
    """The single layer of one of our OCI layout tarballs (see hack/images/ocilayout.py)."""
    with tarfile.open(image_tarball) as tar:

        def member(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None, f"{image_tarball}: no {name}"
            return f.read()

        def blob(digest: str) -> bytes:
            return member("blobs/sha256/" + digest.removeprefix("sha256:"))

        index = json.loads(member("index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        return blob(manifest["layers"][0]["digest"])


def build_rootfs(dest: Path, image_tarball: Path, rootfs_diff: bytes | None) -> None:
    """The container's root filesystem again: the image layer, then the container's changes."""
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(image_layer(image_tarball))) as tar:
        tar.extractall(dest, filter="fully_trusted")
    if rootfs_diff:
        # containerd 2.x gzips rootfs-diff.tar despite its name; our own dump does not.
        data = gzip.decompress(rootfs_diff) if rootfs_diff[:2] == b"\x1f\x8b" else rootfs_diff
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="fully_trusted")


@dataclass
class Restored:
    """A restored process tree: CRIU stays its parent, so CRIU's exit status is the workload's."""

    criu: asyncio.subprocess.Process
    pid: int
    stdout: Path
    log: Path


def describe(restored: Restored, freezer: Path | None = None) -> str:
    """What a test needs to see when a restored tree misbehaves."""
    lines = [f"criu rc={restored.criu.returncode}, restored pid {restored.pid}"]
    for name in ("stat", "wchan"):
        lines.append(f"/proc/{restored.pid}/{name}: {tail(Path(f'/proc/{restored.pid}/{name}'))}")
    if freezer:
        lines.append(f"freezer.state: {tail(freezer / 'freezer.state').strip()}")
    lines.append(f"stdout:\n{tail(restored.stdout, 1000)}")
    lines.append(f"restore.log:\n{tail(restored.log, 3000)}")
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def criu_restore(
    criu: Path,
    images: Path,
    rootfs: Path,
    spec: Mapping[str, Any],
    descriptors: list[str],
    workdir: Path,
) -> AsyncIterator[Restored]:
    """Restore a dumped container; yields once the restored tree runs, kills it on exit.

    ``descriptors`` are the resources behind fds 0-2 at dump time (runc's descriptors.json);
    the container's stdout and stderr pipes (to the shim) are replaced by one file.
    """
    stdout = workdir / "restored.out"
    log = workdir / "restore.log"
    pidfile = workdir / "restored.pid"
    cmd = [
        str(criu),
        "restore",
        "--images-dir",
        str(images),
        "--root",
        str(rootfs),
        "--pidfile",
        str(pidfile),
        "--log-file",
        str(log),
        "-v4",
        "--manage-cgroups=soft",
        "--tcp-established",
        "--file-locks",
        "--ext-unix-sk",
        "--link-remap",
    ]
    for key, source in external_mounts(spec).items():
        cmd += ["--ext-mount-map", f"{key}:{source}"]
    out_fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    cgroups_path = str(spec.get("linux", {}).get("cgroupsPath", "")).lstrip("/")
    freezer = CGROUP_ROOT / "freezer" / cgroups_path if cgroups_path else None
    pass_fds = []
    try:
        for resource in descriptors[1:3]:
            if resource.startswith("pipe:"):
                # One fd per inherited resource: CRIU consumes each one.
                fd = os.dup(out_fd)
                pass_fds.append(fd)
                cmd += ["--inherit-fd", f"fd[{fd}]:{resource}"]
        # CRIU needs the new root to be a mount point (it pivots into it).
        await run("mount", "--bind", str(rootfs), str(rootfs))
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                pass_fds=pass_fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            for fd in pass_fds:
                os.close(fd)
        pid = 0
        try:
            pid = await _wait_restored(proc, pidfile, log, freezer)
            yield Restored(criu=proc, pid=pid, stdout=stdout, log=log)
        finally:
            if proc.returncode is None:
                await _kill_restored(proc, pid, freezer)
            await run("umount", "-l", str(rootfs), check=False)
            if cgroups_path:
                remove_cgroups(cgroups_path)
    finally:
        os.close(out_fd)


async def _wait_restored(
    proc: asyncio.subprocess.Process, pidfile: Path, log: Path, freezer: Path | None
) -> int:
    """Wait until CRIU has restored and resumed the tree; fail with its log if it exits first.

    A checkpoint taken through containerd is taken with the container paused, so the freezer
    state CRIU restores (it restores cgroup properties) is FROZEN; containerd would resume the
    task afterwards, and so do we: thaw once CRIU reports the restore finished.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while "Restore finished successfully" not in tail(log):
        if proc.returncode is not None or loop.time() > deadline:
            raise AssertionError(f"criu restore failed (rc={proc.returncode}):\n{tail(log)}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.05)
    if freezer:
        thaw(freezer)
    return int(tail(pidfile))


async def _kill_restored(proc: asyncio.subprocess.Process, pid: int, freezer: Path | None) -> None:
    """End a restored tree that is still running (a failed test): thaw it first, since a frozen
    task does not die of SIGKILL until thawed, then kill its PID namespace's init, then CRIU."""
    if freezer:
        thaw(freezer)
    for target in (pid, proc.pid):
        if target:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, 9)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
            return
