"""An artifact on disk: staging, digests, manifest, verification and the atomic rename (SPEC §5).

Whatever the dump method, an artifact is a directory of files plus ``manifest.json`` that lists
every other file with its size and SHA-256, the method and its CRIU options, the pod, container
and node facts, and the phase timings. It is built in a staging directory (0700) under
``versions/tmp/`` and renamed to ``versions/<artifactVersion>`` only after every digest was
computed and every part checked: nothing but a complete artifact ever appears at the final path.
Files are 0600 and directories 0700, because a checkpoint holds process memory, secrets included.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dynamo_snapshot.agent.paths import DIR_MODE, FILE_MODE

MANIFEST: Final = "manifest.json"
MANIFEST_SCHEMA: Final = "dynamo-snapshot.nvidia.com/artifact-manifest/v1"
_CHUNK: Final = 4 << 20


class ArtifactError(Exception):
    """The artifact is incomplete or does not match its manifest."""


@dataclass(frozen=True)
class FileDigest:
    path: str  # relative to the artifact directory, '/'-separated
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def sha256_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file. hashlib releases the GIL on large buffers, so several of
    these run in parallel threads (and beside CRIU) on separate cores."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def _raise(err: OSError) -> None:
    raise err


def list_files(directory: Path) -> list[Path]:
    """Every regular file under ``directory`` except the manifest, sorted; a symlink or special
    file there is an error (CRIU and the CRI runtime write neither)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(directory, onerror=_raise):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath, name)
            if p.is_symlink() or not p.is_file():
                raise ArtifactError(f"{p} is not a regular file")
            if p.parent == directory and name == MANIFEST:
                continue
            out.append(p)
    return sorted(out)


def digest_files(
    directory: Path,
    *,
    workers: int = 2,
    known: Mapping[str, tuple[int, str]] | None = None,
) -> list[FileDigest]:
    """Digests of every file of the artifact, biggest first across ``workers`` threads.

    ``known`` holds digests already computed while the file was written (``TailHasher``); one
    is used only if the file still has the size that was hashed."""
    known = known or {}

    def one(p: Path) -> tuple[int, str]:
        done = known.get(p.relative_to(directory).as_posix())
        if done is not None and done[0] == p.stat().st_size:
            return done
        return sha256_file(p)

    files = sorted(list_files(directory), key=lambda p: -p.stat().st_size)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, files))
    out = [
        FileDigest(p.relative_to(directory).as_posix(), size, digest)
        for p, (size, digest) in zip(files, results, strict=True)
    ]
    return sorted(out, key=lambda d: d.path)


class TailHasher:
    """Hashes files while another process writes them (CRIU's page images), on another core.

    CRIU writes each ``pages-*.img`` once, front to back; the hasher follows every file whose
    name matches, reading what has been appended since its last pass, and finishes them after
    ``stop()``. The digests are checked later like any other (``verify(full=True)`` re-reads
    the files), so a writer that did not append only costs a second hashing pass there.
    """

    def __init__(self, directory: Path, prefix: str, suffix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.suffix = suffix
        self._stop = threading.Event()
        self._files: dict[str, tuple[Any, Any, int]] = {}  # name -> (file, hash, size)

    def _pass(self) -> int:
        progressed = 0
        try:
            names = [
                n
                for n in os.listdir(self.directory)
                if n.startswith(self.prefix) and n.endswith(self.suffix)
            ]
        except FileNotFoundError:
            return 0
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        for name in names:
            if name not in self._files:
                f = open(self.directory / name, "rb", buffering=0)  # noqa: SIM115 (kept open)
                self._files[name] = (f, hashlib.sha256(), 0)
            f, h, size = self._files[name]
            while n := f.readinto(buf):
                h.update(view[:n])
                size += n
                progressed += n
            self._files[name] = (f, h, size)
        return progressed

    def run(self) -> dict[str, tuple[int, str]]:
        """Follow until ``stop()``, then read to the end; returns name -> (size, sha256).

        The thread runs at the lowest priority while it follows: on a busy node CRIU (which
        holds the container frozen) must not wait for the hasher; it catches up afterwards."""
        tid = threading.get_native_id()
        try:
            before = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        except OSError:
            before = None
        try:
            while not self._stop.is_set():
                if not self._pass():
                    self._stop.wait(0.005)
            if before is not None:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, before)
                before = None
            self._pass()
            return {name: (size, h.hexdigest()) for name, (_f, h, size) in self._files.items()}
        finally:
            if before is not None:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, before)
            for f, _h, _s in self._files.values():
                f.close()

    def stop(self) -> None:
        self._stop.set()


def restrict_modes(directory: Path) -> None:
    """0700 on every directory, 0600 on every file, the top included."""
    os.chmod(directory, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(directory):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), DIR_MODE, follow_symlinks=False)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), FILE_MODE, follow_symlinks=False)


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Write manifest.json (temp file + rename, 0600, fsynced)."""
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    tmp = directory / f".{MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, directory / MANIFEST)


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError as err:
        raise ArtifactError(f"{directory} has no {MANIFEST}") from err
    except ValueError as err:
        raise ArtifactError(f"{directory}/{MANIFEST} is not JSON: {err}") from err
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ArtifactError(f"{directory}/{MANIFEST}: unknown schema {data.get('schema')!r}")
    return data


def verify(directory: Path, *, full: bool, workers: int = 2) -> dict[str, Any]:
    """Check ``directory`` against its manifest: the same set of files with the same sizes, and
    (``full``) the same SHA-256 digests re-read from disk. Returns the manifest."""
    manifest = read_manifest(directory)
    listed = {f["path"]: f for f in manifest.get("files", [])}
    present = {p.relative_to(directory).as_posix(): p for p in list_files(directory)}
    if set(listed) != set(present):
        missing = sorted(set(listed) - set(present))
        extra = sorted(set(present) - set(listed))
        raise ArtifactError(
            f"{directory}: files differ from the manifest (missing {missing}, unlisted {extra})"
        )
    for rel, p in present.items():
        if p.stat().st_size != listed[rel]["size"]:
            raise ArtifactError(f"{directory}/{rel}: size differs from the manifest")
    if full:
        for d in digest_files(directory, workers=workers):
            if d.sha256 != listed[d.path]["sha256"]:
                raise ArtifactError(f"{directory}/{d.path}: SHA-256 differs from the manifest")
    return manifest


def sync_tree(directory: Path) -> None:
    """fsync every file and directory, so that the rename publishes durable data."""
    for dirpath, _dirnames, filenames in os.walk(directory):
        for f in filenames:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_RENAME_NOREPLACE: Final = 1
_AT_FDCWD: Final = -100


def _renameat2() -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    fn = getattr(libc, "renameat2", None) if libc else None
    return fn


_RENAMEAT2: Final = _renameat2()


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist (plain rename would replace an
    empty directory). Raises FileExistsError otherwise."""
    if _RENAMEAT2 is not None:
        rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "artifact exists", str(dst))
    os.rename(src, dst)


def publish(staging: Path, final: Path, *, fsync: bool) -> None:
    """Make the staged artifact the final one in one rename, then persist the parent entry."""
    if fsync:
        sync_tree(staging)
    rename_noreplace(staging, final)
    if fsync:
        fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_quietly(paths: Iterable[Path]) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
