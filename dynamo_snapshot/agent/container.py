"""What the agent knows of one running container, read from CRI and the host's /proc.

``ContainerStatus(verbose)`` gives containerd's ``info`` JSON: the host PID of the container's
init process and its OCI runtime spec (mounts, cgroups path). The host's ``/proc`` (mounted into
the agent's pod at ``DYNAMO_SNAPSHOT_HOST_PROC``) gives the rest: the overlay upper directory of
its root filesystem, its network namespace and its process tree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo_snapshot.agent.cri.client import CriClient, CriError, CriNotFound, pb


class NotResolved(Exception):
    """The container cannot be resolved to a running process (``ContainerNotResolved``)."""


@dataclass(frozen=True)
class ContainerFacts:
    container_id: str
    name: str
    pid: int
    image: str
    image_ref: str
    spec: dict[str, Any]
    started_at_ns: int

    @property
    def cgroups_path(self) -> str:
        return str(self.spec.get("linux", {}).get("cgroupsPath", ""))


async def resolve(cri: CriClient, container_id: str) -> ContainerFacts:
    """The running container's facts, or ``NotResolved`` naming what is missing."""
    try:
        resp = await cri.container_status(container_id, verbose=True)
    except CriNotFound as err:
        raise NotResolved(f"container {container_id} not found by the runtime") from err
    except CriError as err:
        raise NotResolved(f"container {container_id}: {err}") from err
    status = resp.status
    if status.state != pb.CONTAINER_RUNNING:
        state = pb.ContainerState.Name(status.state)
        raise NotResolved(f"container {container_id} is {state}, not running")
    raw = resp.info.get("info")
    if raw is None:
        raise NotResolved(f"container {container_id}: the runtime's verbose status has no info")
    try:
        info = json.loads(raw)
    except ValueError as err:
        raise NotResolved(f"container {container_id}: verbose info is not JSON") from err
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise NotResolved(f"container {container_id}: no host PID in the runtime's status")
    spec = info.get("runtimeSpec") or {}
    return ContainerFacts(
        container_id=status.id or container_id,
        name=status.metadata.name,
        pid=pid,
        image=status.image.image,
        image_ref=status.image_ref,
        spec=spec if isinstance(spec, dict) else {},
        started_at_ns=status.started_at,
    )


def strip_runtime_prefix(container_id: str) -> str:
    """A pod status' ``containerID`` is ``containerd://<id>``; CRI wants the bare ID."""
    return container_id.split("://", 1)[1] if "://" in container_id else container_id


def overlay_upperdir(host_proc: Path, pid: int) -> Path:
    """The overlay upper directory mounted as the process' root (the container's changes)."""
    for line in (host_proc / str(pid) / "mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        if left.split()[4] != "/" or not right.startswith("overlay "):
            continue
        for option in right.split()[2].split(","):
            if option.startswith("upperdir="):
                return Path(option.split("=", 1)[1])
    raise FileNotFoundError(f"pid {pid}: root is not an overlay mount with an upperdir")


def net_namespace_inode(host_proc: Path, pid: int) -> int:
    return os.stat(host_proc / str(pid) / "ns" / "net").st_ino


def process_tree(host_proc: Path, pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(host_proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(sorted(children.get(p, [])))
    return out
