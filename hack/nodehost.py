"""What a kubelet changes on the host outside its own directories, and the registry of our running
kubelets on this machine.

A kubelet sets a few sysctls, creates hard-coded directories (`/var/log/containers`,
`/var/lib/kubelet/device-plugins`) and libcni caches results under `/var/lib/cni`. Several of our
nodes may run at once (one per checkout or test session), so the host's state is recorded when the
first of them starts and put back when the last one stops. The registry also hands each node its
own index N, from which its loopback address (127.0.0.N, which is also its name: no DNS), its
cgroup root and its CNI bridge are derived, so that two nodes never share any of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import attrs

CACHE = Path(os.environ.get("DYNAMO_SNAPSHOT_CACHE", Path.home() / ".cache" / "dynamo-snapshot"))
REGISTRY = CACHE / "node" / "kubelets"

# Values the kubelet writes at start (container manager's kernel tunables).
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Paths a kubelet or the CNI plugins create whatever their configuration says.
HOST_PATHS = (
    "/var/log/containers",
    "/var/lib/kubelet",
    "/var/lib/kubelet/device-plugins",
    "/var/lib/cni",
    "/var/log/pods",
    "/usr/libexec/kubernetes",
)
FIRST_INDEX, LAST_INDEX = 2, 250  # 127.0.0.1 stays the control plane's


PROC_SYS = Path("/proc/sys")


def read_sysctls(proc_sys: Path = PROC_SYS) -> dict[str, str]:
    return {k: (proc_sys / k).read_text().strip() for k in SYSCTLS}


@attrs.define
class HostState:
    """The host as it was before the first of our kubelets started."""

    sysctls: dict[str, str]
    absent: list[str]

    @classmethod
    def capture(cls, proc_sys: Path, paths: tuple[str, ...]) -> HostState:
        return cls(
            sysctls=read_sysctls(proc_sys), absent=[p for p in paths if not os.path.lexists(p)]
        )

    def restore(self, proc_sys: Path) -> list[str]:
        """Put the sysctls back and remove the paths that did not exist; the problems found."""
        problems = []
        for key, value in self.sysctls.items():
            path = proc_sys / key
            try:
                if path.read_text().strip() != value:
                    path.write_text(value + "\n")
            except OSError as err:
                problems.append(f"cannot restore {key}={value}: {err}")
        for p in self.absent:
            if os.path.lexists(p):
                shutil.rmtree(p, ignore_errors=True)
                if os.path.lexists(p):
                    problems.append(f"cannot remove {p}")
        return problems


@attrs.define
class Registry:
    """Our kubelets on this machine: one file per index naming the node's directory. The host's
    sysctls and paths are parameters only so that a unit test can point them at a stand-in."""

    root: Path = REGISTRY
    proc_sys: Path = PROC_SYS
    host_paths: tuple[str, ...] = HOST_PATHS

    @property
    def host_state_file(self) -> Path:
        return self.root / "host-state.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One node start or stop at a time on the machine."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def entries(self) -> dict[int, Path]:
        out = {}
        for f in self.root.glob("node-*"):
            with contextlib.suppress(ValueError, OSError):
                out[int(f.name.removeprefix("node-"))] = Path(f.read_text().strip())
        return out

    def index_of(self, node_dir: Path) -> int | None:
        for n, d in self.entries().items():
            if d == node_dir:
                return n
        return None

    def allocate(self, node_dir: Path) -> int:
        """The index registered for `node_dir`, or the lowest free one. Records the host state
        first when no other node of ours is registered."""
        known = self.index_of(node_dir)
        if known is not None:
            return known
        self.root.mkdir(parents=True, exist_ok=True)
        taken = self.entries()
        if not taken:
            state = HostState.capture(self.proc_sys, self.host_paths)
            self.host_state_file.write_text(json.dumps(attrs.asdict(state), indent=2))
        for n in range(FIRST_INDEX, LAST_INDEX + 1):
            if n not in taken:
                (self.root / f"node-{n}").write_text(str(node_dir))
                return n
        raise RuntimeError(f"all {LAST_INDEX - FIRST_INDEX + 1} node indexes are taken")

    def release(self, n: int) -> list[str]:
        """Forget node `n`; when it was the last, restore the host. The problems found."""
        (self.root / f"node-{n}").unlink(missing_ok=True)
        if self.entries() or not self.host_state_file.exists():
            return []
        state = HostState(**json.loads(self.host_state_file.read_text()))
        problems = state.restore(self.proc_sys)
        if not problems:
            self.host_state_file.unlink()
        return problems
