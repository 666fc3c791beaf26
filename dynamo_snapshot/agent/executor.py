"""The capture executor: one container in, one verified artifact at its final path out (SPEC §5).

Methods (config ``method``):
- ``cri``: ``CheckpointContainer`` into ``checkpoint.tar`` in a fresh staging directory, bounded
  by the gRPC deadline (containerd ignores the request's own timeout).
- ``criu``: CRIU on the container's host PID (``criu.py``), with ``rootfs-diff.tar`` and
  ``deleted.files`` written beside the images while CRIU runs.
- ``auto``: ``criu`` when the agent has a CRIU binary, otherwise ``cri``; and ``cri`` falls back
  to ``criu`` when the runtime answers UNIMPLEMENTED. README "Choosing the dump method" has the
  measurements behind this order.

Every method then: digests of every file, the method's parts checked, modes restricted, the
manifest written and checked against the files, and one rename to the final path. Any failure
removes the staging directory, makes sure the container is not left frozen, and raises
``CaptureFailed`` with the tail of the dump log in its message.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import anyio

from dynamo_snapshot.agent import artifact, criu
from dynamo_snapshot.agent.container import (
    ContainerFacts,
    net_namespace_inode,
    overlay_upperdir,
    process_tree,
)
from dynamo_snapshot.agent.cri.client import (
    CriClient,
    CriDeadlineExceeded,
    CriError,
    CriUnimplemented,
)
from dynamo_snapshot.agent.cuda import CudaCheckpointError, CudaSession
from dynamo_snapshot.agent.freezer import ensure_thawed, freezer_file
from dynamo_snapshot.agent.paths import DIR_MODE, Destination, make_dirs_nofollow
from dynamo_snapshot.agent.phases import DIGEST, DUMP, FINALIZE, ROOTFS_DIFF, Phases
from dynamo_snapshot.agent.together import run_all

Method = Literal["auto", "cri", "criu"]
METHODS: Final = ("auto", "cri", "criu")
CRI_ARCHIVE: Final = "checkpoint.tar"
# What containerd 2.x writes into a CheckpointContainer archive (TESTBED.md).
_CRI_REQUIRED: Final = ("config.dump", "spec.dump", "rootfs-diff.tar", "dump.log")


class CaptureFailed(Exception):
    """The dump or one of its parts failed (``CheckpointFailed``)."""


@dataclass(frozen=True)
class ExecutorConfig:
    storage_root: Path
    method: Method = "auto"
    criu_path: str = "criu"
    criu_env: Mapping[str, str] = field(default_factory=dict)
    cuda_checkpoint: str | None = None
    host_proc: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    checkpoint_timeout_s: float = 600.0
    fsync: bool = True
    hash_workers: int = 2


@dataclass(frozen=True)
class CaptureRequest:
    """Who is captured: the pod and node facts that go into the manifest."""

    pod_namespace: str
    pod_name: str
    pod_uid: str
    node_name: str
    container: ContainerFacts


@dataclass(frozen=True)
class CaptureResult:
    method: str
    path: Path
    bytes_written: int
    manifest: dict[str, Any]


def criu_available(path: str) -> bool:
    return shutil.which(path) is not None


class Executor:
    def __init__(self, cri: CriClient, config: ExecutorConfig) -> None:
        self.cri = cri
        self.config = config

    def choose_method(self) -> str:
        if self.config.method != "auto":
            return self.config.method
        return "criu" if criu_available(self.config.criu_path) else "cri"

    async def capture(
        self, req: CaptureRequest, dest: Destination, phases: Phases
    ) -> CaptureResult:
        """Dump ``req.container`` into ``dest.final``; ``CaptureFailed`` on any failure."""
        method = self.choose_method()
        make_dirs_nofollow(self.config.storage_root, dest.staging_parent)
        staging = dest.new_staging()
        os.mkdir(staging, DIR_MODE)
        freezer = freezer_file(self.config.cgroup_root, req.container.cgroups_path)
        options: list[str] = []
        known: dict[str, tuple[int, str]] = {}
        failed = False
        try:
            if method == "cri":
                try:
                    options, known = await self._dump_cri(req, staging, phases)
                except CriUnimplemented:
                    if self.config.method == "cri":
                        raise CaptureFailed(
                            "the runtime does not implement CRI CheckpointContainer "
                            "(containerd < 2.0); set method to criu or auto"
                        ) from None
                    _empty(staging)
                    method = "criu"
            if method == "criu":
                options, known = await self._dump_criu(req, staging, phases, freezer)
            with phases.phase(DIGEST):
                files = await anyio.to_thread.run_sync(
                    lambda: artifact.digest_files(
                        staging, workers=self.config.hash_workers, known=known
                    )
                )
            with phases.phase(FINALIZE):
                manifest = _manifest(req, dest, method, options, files, phases.timings)
                await anyio.to_thread.run_sync(
                    lambda: self._finalize(staging, dest.final, manifest)
                )
        except CaptureFailed:
            failed = True
            raise
        except (OSError, artifact.ArtifactError, criu.CriuError, CriError) as err:
            failed = True
            raise CaptureFailed(str(err)) from err
        except BaseException:
            failed = True
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if staging.exists():
                    await anyio.to_thread.run_sync(lambda: shutil.rmtree(staging, True))
                if not await ensure_thawed(freezer, settle=failed):
                    raise CaptureFailed(f"container {req.container.container_id} stays frozen")
        return CaptureResult(
            method=method,
            path=dest.final,
            bytes_written=sum(f.size for f in files),
            manifest=manifest,
        )

    def _finalize(self, staging: Path, final: Path, manifest: dict[str, Any]) -> None:
        artifact.restrict_modes(staging)
        artifact.write_manifest(staging, manifest)
        artifact.verify(staging, full=False)
        artifact.publish(staging, final, fsync=self.config.fsync)

    # ---- cri ----

    async def _dump_cri(
        self, req: CaptureRequest, staging: Path, phases: Phases
    ) -> tuple[list[str], dict[str, tuple[int, str]]]:
        """CheckpointContainer into ``checkpoint.tar``; returns no options (the runtime chose
        them) and the archive's digest, hashed while containerd writes it."""
        archive = staging / CRI_ARCHIVE  # a fresh path: containerd does not truncate
        timeout = self.config.checkpoint_timeout_s
        freezer = freezer_file(self.config.cgroup_root, req.container.cgroups_path)
        hasher = artifact.TailHasher(staging, CRI_ARCHIVE, "")
        hashed: dict[str, tuple[int, str]] = {}

        async def call() -> None:
            try:
                await self.cri.checkpoint_container(
                    req.container.container_id, str(archive), timeout=timeout
                )
            finally:
                hasher.stop()

        async def hash_archive() -> None:
            hashed.update(await anyio.to_thread.run_sync(hasher.run))

        with phases.phase(DUMP):
            try:
                await run_all(call, hash_archive)
            except CriDeadlineExceeded as err:
                # containerd 2.1.9 leaves the task frozen when the call is cancelled.
                with anyio.CancelScope(shield=True):
                    await ensure_thawed(freezer)
                raise CaptureFailed(
                    f"CRI CheckpointContainer did not finish within {timeout:g} s"
                ) from err
            except CriUnimplemented:
                raise
            except CriError as err:
                raise CaptureFailed(str(err)) from err
        await anyio.to_thread.run_sync(lambda: check_cri_archive(archive))
        return [], hashed

    # ---- criu ----

    async def _dump_criu(
        self, req: CaptureRequest, staging: Path, phases: Phases, freezer: Path | None
    ) -> tuple[list[str], dict[str, tuple[int, str]]]:
        """Dump with CRIU; returns its options and the page images' digests (hashed while
        written)."""
        c = req.container
        proc = self.config.host_proc
        images = staging / criu.IMAGES_DIR
        os.mkdir(images, DIR_MODE)
        descriptors = [_readlink(proc / str(c.pid) / "fd" / str(fd)) for fd in range(3)]
        # CRIU runs in our network namespace: a container in another one has it external.
        own_net = os.stat("/proc/self/ns/net").st_ino
        container_net = net_namespace_inode(proc, c.pid)
        hierarchies = criu.cgroup_mounts(self.config.cgroup_root)
        args = criu.dump_args(
            pid=c.pid,
            images=images,
            root=proc / str(c.pid) / "root",
            freezer_cgroup=freezer.parent if freezer is not None else None,
            external_mount_points=sorted(criu.external_mounts(c.spec, hierarchies)),
            external_netns_inode=None if container_net == own_net else container_net,
        )
        upperdir = overlay_upperdir(proc, c.pid)
        cuda = (
            CudaSession(self.config.cuda_checkpoint, timeout_s=self.config.checkpoint_timeout_s)
            if self.config.cuda_checkpoint
            else None
        )

        # The page images are hashed while CRIU writes them, on the other core.
        hasher = artifact.TailHasher(images, "pages-", ".img")
        hashed: dict[str, tuple[int, str]] = {}

        async def dump() -> None:
            try:
                with phases.phase(DUMP):
                    if cuda is not None:
                        await cuda.checkpoint(process_tree(proc, c.pid))
                    try:
                        await criu.run_dump(
                            self.config.criu_path, args, images, self.config.criu_env
                        )
                    finally:
                        if cuda is not None:
                            with anyio.CancelScope(shield=True):
                                await cuda.resume()
            finally:
                hasher.stop()

        async def hash_pages() -> None:
            hashed.update(await anyio.to_thread.run_sync(hasher.run))

        def diff() -> None:
            with phases.phase(ROOTFS_DIFF):
                criu.write_rootfs_diff(
                    upperdir, staging / criu.ROOTFS_DIFF, staging / criu.DELETED_FILES
                )
                criu.check_rootfs_diff(staging / criu.ROOTFS_DIFF, staging / criu.DELETED_FILES)

        try:
            with anyio.fail_after(self.config.checkpoint_timeout_s):
                await run_all(dump, lambda: anyio.to_thread.run_sync(diff), hash_pages)
        except TimeoutError as err:
            raise CaptureFailed(
                f"CRIU dump did not finish within {self.config.checkpoint_timeout_s:g} s:\n"
                f"{criu.log_tail(images / criu.DUMP_LOG)}"
            ) from err
        except CudaCheckpointError as err:
            raise CaptureFailed(str(err)) from err
        criu.check_images(images)
        (images / "descriptors.json").write_text(json.dumps(descriptors))
        (staging / criu.SPEC_DUMP).write_text(json.dumps(c.spec))
        return args, {f"{criu.IMAGES_DIR}/{name}": v for name, v in hashed.items()}


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _empty(directory: Path) -> None:
    for p in directory.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def check_cri_archive(archive: Path) -> None:
    """The parts of a CRI checkpoint archive, and CRIU's own word that the dump finished."""
    try:
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            missing = [n for n in _CRI_REQUIRED if n not in names]
            for image in ("checkpoint/inventory.img", "checkpoint/pstree.img"):
                if image not in names:
                    missing.append(image)
            if not any(n.startswith("checkpoint/pages-") for n in names):
                missing.append("checkpoint/pages-*.img")
            if missing:
                raise CaptureFailed(f"{archive.name} lacks {', '.join(missing)}")
            log = tar.extractfile("dump.log")
            text = log.read().decode(errors="replace") if log else ""
    except (OSError, tarfile.TarError) as err:
        raise CaptureFailed(f"{archive.name} is not a readable archive: {err}") from err
    if criu.DUMP_OK not in text:
        tail = "\n".join(text.splitlines()[-15:])
        raise CaptureFailed(f"{archive.name}: dump.log does not say '{criu.DUMP_OK}':\n{tail}")


def _manifest(
    req: CaptureRequest,
    dest: Destination,
    method: str,
    options: list[str],
    files: list[artifact.FileDigest],
    timings: Mapping[str, float],
) -> dict[str, Any]:
    c = req.container
    return {
        "schema": artifact.MANIFEST_SCHEMA,
        "checkpointID": dest.checkpoint_id,
        "artifactVersion": dest.artifact_version,
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": method,
        "criu": {
            "options": options,
            "note": (
                "dumped by the agent with these options"
                if method == "criu"
                else "dumped by the container runtime (CRI CheckpointContainer)"
            ),
        },
        "pod": {"namespace": req.pod_namespace, "name": req.pod_name, "uid": req.pod_uid},
        "container": {
            "name": c.name,
            "id": c.container_id,
            "image": c.image,
            "imageRef": c.image_ref,
            "hostPID": c.pid,
            "cgroupsPath": c.cgroups_path,
        },
        "node": {
            "name": req.node_name,
            "hostname": socket.gethostname(),
            "kernel": os.uname().release,
        },
        "files": [f.to_dict() for f in files],
        "totalBytes": sum(f.size for f in files),
        "phases": {k: round(v, 6) for k, v in timings.items()},
        "wallClock": time.time(),
    }
