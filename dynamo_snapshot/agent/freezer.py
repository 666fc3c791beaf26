"""Never leave a container frozen.

Both dump paths freeze the container's cgroup while CRIU copies its memory. When the CRI call is
cancelled by its gRPC deadline, containerd 2.1.9 abandons the checkpoint and leaves the cgroup
FROZEN until the container is killed (TESTBED.md); a CRIU process killed mid-dump can do the same.
A frozen workload does not even die of SIGKILL, so a Job would hang until its deadline.

``ensure_thawed`` therefore writes THAWED and waits until the state stays THAWED for a settle
window (the abandoned dump may still be freezing in the background); callers kill the container
when it cannot be thawed. cgroup v1 (``freezer.state``) and v2 (``cgroup.freeze``) both work.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Final

import anyio

_SETTLE_S: Final = 0.5
_POLL_S: Final = 0.05


def freezer_file(cgroup_root: Path, cgroups_path: str) -> Path | None:
    """The file that holds the container's freezer state, or None where it has no cgroup here.

    Only cgroupfs paths (``/a/b/c``) name a directory; a systemd-driver path (``slice:prefix:name``)
    is expanded the way runc does it.
    """
    if not cgroups_path:
        return None
    rel = _systemd_path(cgroups_path) if ":" in cgroups_path else cgroups_path.lstrip("/")
    v1 = cgroup_root / "freezer" / rel / "freezer.state"
    if v1.exists():
        return v1
    v2 = cgroup_root / rel / "cgroup.freeze"
    if v2.exists():
        return v2
    return None


def _systemd_path(cgroups_path: str) -> str:
    slice_, prefix, name = ([*cgroups_path.split(":"), "", ""])[:3]
    parts: list[str] = []
    if slice_ and slice_ != "-.slice":
        stem = slice_.removesuffix(".slice")
        acc = ""
        for piece in stem.split("-"):
            acc = f"{acc}-{piece}" if acc else piece
            parts.append(f"{acc}.slice")
    scope = f"{prefix}-{name}.scope" if prefix else name
    return "/".join([*parts, scope])


def is_frozen(state_file: Path) -> bool:
    try:
        value = state_file.read_text().strip()
    except FileNotFoundError:
        return False
    if state_file.name == "cgroup.freeze":
        return value == "1"
    return value != "THAWED"  # FROZEN or FREEZING


def _thaw(state_file: Path) -> None:
    # FileNotFoundError: the cgroup went away with the container, so nothing is frozen.
    with contextlib.suppress(FileNotFoundError):
        state_file.write_text("0" if state_file.name == "cgroup.freeze" else "THAWED")


async def ensure_thawed(
    state_file: Path | None, *, settle: bool = True, timeout: float = 10.0
) -> bool:
    """Thaw until the state stays THAWED for a settle window; False if it would not.

    ``settle=False`` returns at once when nothing is frozen (no dump can be running: the
    normal path); after a cancelled or failed dump the runtime may still freeze the cgroup
    behind our back, hence the window."""
    if state_file is None:
        return True
    if not settle and not is_frozen(state_file):
        return True
    deadline = time.monotonic() + timeout
    thawed_since: float | None = None
    while time.monotonic() < deadline:
        if is_frozen(state_file):
            thawed_since = None
            _thaw(state_file)
        elif thawed_since is None:
            thawed_since = time.monotonic()
        elif time.monotonic() - thawed_since >= _SETTLE_S:
            return True
        await anyio.sleep(_POLL_S)
    return not is_frozen(state_file)
