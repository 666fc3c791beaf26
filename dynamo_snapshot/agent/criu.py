"""The CRIU fallback (SPEC §5.2): dump a container's process tree by its host PID.

The options are SPEC §5's: the container's root, its network namespace as external (when it is
not the host's), the cgroup freezer, ``--leave-running``, ``--tcp-established``,
``--file-locks``, ``--ext-unix-sk``, ``--link-remap``, ``--manage-cgroups=soft``, log level 4 and
the log file in the images directory. Every bind mount of the container (and on cgroup v1 each
per-hierarchy cgroup mount) is marked external under its mount point, which is also the key runc
uses, so a restore maps them the same way for either method.

Beside the images: ``rootfs-diff.tar`` (the overlay upper directory: the container's changes to
its image, whiteouts excluded) and ``deleted.files`` (JSON list of the paths the container
deleted from its image, read from the whiteouts).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import anyio

IMAGES_DIR: Final = "checkpoint"
ROOTFS_DIFF: Final = "rootfs-diff.tar"
DELETED_FILES: Final = "deleted.files"
DUMP_LOG: Final = "dump.log"
SPEC_DUMP: Final = "spec.dump"
DUMP_OK: Final = "Dumping finished successfully"

# The SPEC §5 option set, in the order written to the manifest.
BASE_OPTIONS: Final = (
    "--leave-running",
    "--tcp-established",
    "--file-locks",
    "--ext-unix-sk",
    "--link-remap",
    "--manage-cgroups=soft",
    "-v4",
)


class CriuError(Exception):
    """CRIU failed; the message carries the tail of its log."""


def cgroup_mounts(cgroup_root: Path) -> list[Path]:
    """Mount points of the host's cgroup hierarchies directly under ``cgroup_root``."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        mountpoint = Path(left.split()[4])
        if right.split()[0] in ("cgroup", "cgroup2") and mountpoint.parent == cgroup_root:
            out.append(mountpoint)
    return out


def external_mounts(spec: Mapping[str, Any], hierarchies: Sequence[Path]) -> dict[str, str]:
    """Container mount point → host path of every mount CRIU must treat as external.

    Bind mounts come back from their source; the cgroup v1 mount is one bind mount per host
    hierarchy, of the container's own cgroup.
    """
    out: dict[str, str] = {}
    cgroups_path = str(spec.get("linux", {}).get("cgroupsPath", "")).lstrip("/")
    for m in spec.get("mounts", []):
        dest = str(m["destination"])
        options = m.get("options") or []
        if m.get("type") == "bind" or "bind" in options or "rbind" in options:
            out[dest] = str(m["source"])
        elif m.get("type") == "cgroup":
            for hierarchy in hierarchies:
                out[f"{dest}/{hierarchy.name}"] = str(hierarchy / cgroups_path)
    return out


def dump_args(
    *,
    pid: int,
    images: Path,
    root: Path,
    freezer_cgroup: Path | None,
    external_mount_points: Sequence[str],
    external_netns_inode: int | None,
) -> list[str]:
    """The ``criu dump`` arguments (without the binary) for one container."""
    args = [
        "dump",
        "--tree",
        str(pid),
        "--images-dir",
        str(images),
        "--log-file",
        str(images / DUMP_LOG),
        "--root",
        str(root),
        *BASE_OPTIONS,
    ]
    if freezer_cgroup is not None:
        args += ["--freeze-cgroup", str(freezer_cgroup)]
    if external_netns_inode is not None:
        args += ["--external", f"net[{external_netns_inode}]:extRootNetNS"]
    for key in external_mount_points:
        args += ["--external", f"mnt[{key}]:{key}"]
    return args


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no dump log)"
    return "\n".join(text.splitlines()[-lines:])


async def run_dump(criu: str, args: Sequence[str], images: Path, env: Mapping[str, str]) -> None:
    """Run ``criu dump``; raise ``CriuError`` with the log's tail unless it succeeded.

    Cancellation (deadline, shutdown, a sibling step failing) kills CRIU and every process it
    forked: CRIU runs in a session of its own and the whole group is killed, because killing only
    its PID left a forked CRIU child orphaned and stopped, holding the staging directory open.
    A dump is never left running unowned.
    """
    log = images / DUMP_LOG
    try:
        process = await anyio.open_process(
            [criu, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    except FileNotFoundError as err:
        raise CriuError(f"criu binary {criu!r} not found") from err
    output = bytearray()
    try:
        assert process.stdout is not None
        async for chunk in process.stdout:
            output += chunk
        returncode = await process.wait()
    except BaseException:
        with anyio.CancelScope(shield=True):
            _kill_group(process.pid)
            await process.wait()
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()
    # A dump that ended by itself may still leave helpers it forked behind.
    _kill_group(process.pid)
    out = output.decode(errors="replace").strip()
    if returncode != 0:
        raise CriuError(f"criu dump exited {returncode}: {out[-500:]}\n{log_tail(log)}".strip())
    if DUMP_OK not in log.read_text(errors="replace"):
        raise CriuError(f"criu dump exited 0 without '{DUMP_OK}' in its log:\n{log_tail(log)}")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _raise(err: OSError) -> None:
    raise err


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def write_rootfs_diff(upperdir: Path, tar_path: Path, deleted_path: Path) -> int:
    """Tar the upper directory (whiteouts excluded) and list the deleted paths; return the
    number of entries archived. Any error propagates: a capture without its diff is no capture."""
    if not upperdir.is_dir():
        raise FileNotFoundError(f"overlay upper directory {upperdir} does not exist")
    deleted: list[str] = []
    count = 0
    fd = os.open(tar_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with (
        os.fdopen(fd, "wb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        # os.walk skips unreadable directories unless told to raise: a partial diff is no diff.
        for dirpath, dirnames, filenames in os.walk(upperdir, onerror=_raise):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(dirpath, name)
                rel = full.relative_to(upperdir).as_posix()
                st = full.lstat()
                if _is_whiteout(st):
                    deleted.append("/" + rel)
                    continue
                tar.add(full, arcname=rel, recursive=False)
                count += 1
    deleted_path.write_text(json.dumps(sorted(deleted)) + "\n")
    os.chmod(deleted_path, 0o600)
    return count


def check_images(images: Path) -> None:
    """The parts every CRIU image set has; a dump that lacks one is not an artifact."""
    names = {p.name for p in images.iterdir()}
    for required in ("inventory.img", "pstree.img"):
        if required not in names:
            raise CriuError(f"{images}: {required} missing")
    if not any(n.startswith("pages-") and n.endswith(".img") for n in names):
        raise CriuError(f"{images}: no pages-*.img")
    if DUMP_OK not in (images / DUMP_LOG).read_text(errors="replace"):
        raise CriuError(f"{images}/{DUMP_LOG} does not say '{DUMP_OK}'")


def check_rootfs_diff(tar_path: Path, deleted_path: Path) -> None:
    """The diff tar reads to its end and the deleted list is a JSON list of absolute paths."""
    try:
        with tarfile.open(tar_path) as tar:
            for _ in tar:
                pass
    except (OSError, tarfile.TarError) as err:
        raise CriuError(f"{tar_path.name} is not a readable tar: {err}") from err
    try:
        deleted = json.loads(deleted_path.read_text())
    except (OSError, ValueError) as err:
        raise CriuError(f"{deleted_path.name} is unreadable: {err}") from err
    if not isinstance(deleted, list) or not all(
        isinstance(p, str) and p.startswith("/") for p in deleted
    ):
        raise CriuError(f"{deleted_path.name} is not a list of absolute paths")
