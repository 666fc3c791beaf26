"""Fixtures of the node tests: a real containerd 2.x + runc + CRIU node (hack/node), with the test
bed's images loaded, and pods run through its CRI socket the way a kubelet runs them.

The session fixture starts the node with hack/node/node-up.sh unless one is already running, and
stops it at the end only if it started it. Tests are skipped only when a probe shows the machine
cannot run a container at all (not root, no overlayfs, no cgroups, no namespaces); the skip
reason names the probe. Anything else that fails is a test failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dynamo_snapshot.agent.cri.client import CriClient, CriNotFound, pb
from tests.node.support import remove_cgroups, sandbox_config, workload_config
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]
HACK_NODE = REPO / "hack" / "node"


@dataclass(frozen=True)
class NodeRuntime:
    """The running node: its CRI socket, private binaries and the image tarballs it loaded."""

    cri_socket: Path
    bin_dir: Path
    images: Mapping[str, Path]

    @property
    def criu(self) -> Path:
        return self.bin_dir / "criu"

    def image_tarball(self, reference: str) -> Path:
        return self.images[reference]


def _probe_failure() -> str | None:
    """Why this machine provably cannot run a container, or None."""
    if os.geteuid() != 0:
        return f"probe failed: not root (euid {os.geteuid()}); containerd and CRIU need root"
    if "overlay" not in Path("/proc/filesystems").read_text():
        subprocess.run(["modprobe", "overlay"], capture_output=True, check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            return "probe failed: no overlay filesystem in /proc/filesystems (modprobe overlay)"
    if not any(Path("/sys/fs/cgroup").iterdir()):
        return "probe failed: nothing mounted under /sys/fs/cgroup"
    ns = subprocess.run(
        ["unshare", "--mount", "--pid", "--ipc", "--uts", "--fork", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if ns.returncode != 0:
        return f"probe failed: cannot create namespaces (unshare): {ns.stderr.strip()}"
    return None


def _node_env() -> dict[str, str]:
    out = subprocess.run(
        [str(HACK_NODE / "node-env.sh")], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _run_script(path: Path, *args: str) -> str:
    proc = subprocess.run([str(path), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{path.name} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


@pytest.fixture(scope="session")
def node_runtime() -> Iterator[NodeRuntime]:
    """The node, started if needed. Several test sessions may share it (one machine, several
    checkouts): each holds a shared lock while it runs, and a node that a test session started
    (marked in its run directory) is stopped by the last session to finish. A node started by
    `just node-up` is left running."""
    reason = _probe_failure()
    if reason:
        pytest.skip(reason)
    env = _node_env()
    run_dir = Path(env["NODE_RUN"])
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # One users lock per run directory, beside it: sessions on a private runtime
    # (DYNAMO_SNAPSHOT_NODE_RUN) must not keep the shared one alive, nor it theirs.
    users = os.open(run_dir.parent / f"{run_dir.name}.users", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(users, fcntl.LOCK_SH)
    marker = run_dir / "started-by-tests"
    try:
        started = env["RUNNING"] != "yes"
        socket = Path(_run_script(HACK_NODE / "node-up.sh").strip().splitlines()[-1])
        if started:
            marker.touch()
        images = {}
        for line in _run_script(REPO / "hack" / "images" / "build-images.sh").splitlines():
            reference, tarball, _digest = line.split()
            images[reference] = Path(tarball)
        yield NodeRuntime(cri_socket=socket, bin_dir=Path(env["NODE_BIN"]), images=images)
    finally:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while others use it
            last = True
        except BlockingIOError:
            last = False
        if last and marker.exists():
            _run_script(HACK_NODE / "node-down.sh")
        os.close(users)


@pytest.fixture(scope="session")
def cri_endpoint(node_runtime: NodeRuntime) -> str:
    """Path of a CRI socket whose runtime has the pause and workload images loaded."""
    return str(node_runtime.cri_socket)


@pytest.fixture
async def cri(cri_endpoint: str) -> AsyncIterator[CriClient]:
    async with CriClient(cri_endpoint, timeout=60) as client:
        yield client


@dataclass
class Pod:
    """A running pod sandbox with a host-side control directory for its workload."""

    cri: CriClient
    sandbox_id: str
    config: pb.PodSandboxConfig
    control_dir: Path
    log_dir: Path
    containers: list[str] = field(default_factory=list)

    @property
    def cgroup_parent(self) -> str:
        return self.config.linux.cgroup_parent

    async def start_workload(self, env: Mapping[str, str] | None = None) -> str:
        """Create and start the workload container; return its ID once CRI reports it running."""
        cid = await self.cri.create_container(
            self.sandbox_id, workload_config(self.control_dir, env=env), self.config
        )
        self.containers.append(cid)
        await self.cri.start_container(cid)

        async def running() -> bool:
            status = await self.cri.container_status(cid)
            return bool(status.status.state == pb.CONTAINER_RUNNING)

        await wait_for(running, 30, f"container {cid[:12]} running")
        return cid

    def container_log(self, name: str = "main") -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
async def pod(cri: CriClient, tmp_path: Path) -> AsyncIterator[Pod]:
    control = tmp_path / "control"
    logs = tmp_path / "logs"
    control.mkdir()
    logs.mkdir()
    config = sandbox_config(
        f"node-test-{uuid.uuid4().hex[:8]}", logs, labels={"dynamo-snapshot.test/node": "true"}
    )
    sandbox_id = await cri.run_pod_sandbox(config)
    try:
        yield Pod(cri, sandbox_id, config, control, logs)
    finally:
        with contextlib.suppress(CriNotFound):
            await cri.stop_pod_sandbox(sandbox_id)
            await cri.remove_pod_sandbox(sandbox_id)
        # runc removes each container's cgroup; the pod level is the kubelet's to remove.
        remove_cgroups(config.linux.cgroup_parent)


@pytest.fixture(scope="session")
def criu(node_runtime: NodeRuntime) -> Path:
    """The node's CRIU, once `criu check` passed: a failure there is a broken install (wrong
    version for the kernel, missing library), which must fail loudly rather than skip."""
    check = subprocess.run(
        [str(node_runtime.criu), "check"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, f"criu check failed: {(check.stdout + check.stderr)[-2000:]}"
    return node_runtime.criu
