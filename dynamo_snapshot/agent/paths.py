"""Where an artifact goes, and why nothing else can be written (SPEC §3, §5).

The configured storage root is trusted; everything a pod supplies is not. A pod may narrow the
base path with the ``nvidia.com/snapshot-storage-base-path`` annotation, but only to a directory
inside the root; the checkpoint ID and artifact version become path components, so they are
validated before any path is built from them. Every rejection is an ``InvalidDestination`` (or
``InvalidCheckpointID``) with a one-line message naming the value and the rule it breaks.

Directories are created one component at a time relative to an already opened parent with
``O_NOFOLLOW``: a symlink planted after validation cannot redirect the creation outside the root.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from dynamo_snapshot.api import constants as c

# A label value (the checkpoint ID is read from a label): at most 63 characters, alphanumeric at
# both ends, `-`, `_`, `.` inside.
_LABEL_VALUE: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_STAGING_DIR: Final = "tmp"
_VERSIONS_DIR: Final = "versions"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


class DestinationError(ValueError):
    """The destination is unsafe; ``reason`` is the SPEC failure reason to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def validate_checkpoint_id(value: str | None) -> str:
    """The checkpoint ID from the pod's label, or ``DestinationError`` with the SPEC reason."""
    if not value:
        raise DestinationError(
            c.REASON_MISSING_CHECKPOINT_ID, f"pod has no {c.LABEL_CHECKPOINT_ID} label"
        )
    if "/" in value or ".." in value or not _LABEL_VALUE.match(value):
        raise DestinationError(
            c.REASON_INVALID_CHECKPOINT_ID,
            f"checkpoint ID {value!r} is not a valid label value without '/' or '..'",
        )
    return value


def validate_artifact_version(value: str) -> str:
    """The artifact version is a path component too: same rules as the ID."""
    if "/" in value or ".." in value or not _LABEL_VALUE.match(value) or value == _STAGING_DIR:
        raise DestinationError(
            c.REASON_INVALID_DESTINATION,
            f"artifact version {value!r} is not a valid label value without '/' or '..'",
        )
    return value


@dataclass(frozen=True)
class Destination:
    """The resolved locations of one artifact."""

    base: Path  # the (possibly narrowed) base path, inside the root
    checkpoint_id: str
    artifact_version: str

    @property
    def versions(self) -> Path:
        return self.base / self.checkpoint_id / _VERSIONS_DIR

    @property
    def final(self) -> Path:
        return self.versions / self.artifact_version

    @property
    def staging_parent(self) -> Path:
        return self.versions / _STAGING_DIR

    def new_staging(self) -> Path:
        """A fresh staging directory path (not yet created): a random name per attempt."""
        return self.staging_parent / secrets.token_hex(8)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_destination(
    root: Path, annotation: str | None, checkpoint_id: str, artifact_version: str
) -> Destination:
    """Validate the IDs, then the base path; nothing is created here.

    ``root`` must be absolute (config validation guarantees it). ``annotation`` is the pod's
    base-path override: absolute, no ``..`` component, and inside ``root`` both as written and
    after resolving every symlink of the part that exists.
    """
    checkpoint_id = validate_checkpoint_id(checkpoint_id)
    artifact_version = validate_artifact_version(artifact_version)
    real_root = Path(os.path.realpath(root))
    base = real_root
    if annotation:
        pure = PurePosixPath(annotation)
        if not pure.is_absolute():
            raise DestinationError(
                c.REASON_INVALID_DESTINATION,
                f"storage base path {annotation!r} is not absolute",
            )
        if ".." in pure.parts:
            raise DestinationError(
                c.REASON_INVALID_DESTINATION,
                f"storage base path {annotation!r} contains '..'",
            )
        written = Path(os.path.normpath(annotation))
        if not (_within(written, root) or _within(written, real_root)):
            raise DestinationError(
                c.REASON_INVALID_DESTINATION,
                f"storage base path {annotation!r} is outside the allowed root {str(root)!r}",
            )
        base = Path(os.path.realpath(written))
        if not _within(base, real_root):
            raise DestinationError(
                c.REASON_INVALID_DESTINATION,
                f"storage base path {annotation!r} resolves to {str(base)!r}, outside the "
                f"allowed root {str(root)!r} (a symlink escapes it)",
            )
    dest = Destination(base, checkpoint_id, artifact_version)
    # The ID and version directories themselves may exist already: they must not be symlinks.
    for part in (dest.base / checkpoint_id, dest.versions, dest.final):
        if part.is_symlink():
            raise DestinationError(
                c.REASON_INVALID_DESTINATION, f"{str(part)!r} is a symlink; refusing to follow it"
            )
    return dest


def make_dirs_nofollow(root: Path, target: Path) -> None:
    """Create ``target`` (inside ``root``) and its missing parents, mode 0700, never following
    a symlink below ``root``. Raises ``DestinationError`` if one is met."""
    real_root = Path(os.path.realpath(root))
    rel = target.relative_to(real_root) if _within(target, real_root) else None
    if rel is None:
        raise DestinationError(
            c.REASON_INVALID_DESTINATION, f"{str(target)!r} is outside {str(root)!r}"
        )
    os.makedirs(real_root, mode=DIR_MODE, exist_ok=True)
    fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in rel.parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, DIR_MODE, dir_fd=fd)
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as err:
                raise DestinationError(
                    c.REASON_INVALID_DESTINATION,
                    f"{str(target)!r}: {part!r} is not a plain directory ({err.strerror})",
                ) from err
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
