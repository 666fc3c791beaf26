"""A real node for the local cluster: a kubelet of the pinned release on its own containerd.

The kubelet kills every CRI pod it did not create, so it never shares a containerd: its node runs
a containerd instance of its own (hack/node/node-up.sh with the run directory `<node>/cri`), apart
from the one the direct-CRI tests use. Identity is a real cluster's: a client certificate for
`system:node:<name>` (Node authorizer + NodeRestriction on the apiserver), a serving certificate
signed by the cluster CA, webhook authentication and authorization, anonymous and read-only port
off.

Nothing is ever looked up in DNS and nothing leaves loopback: the node's name is a loopback
address of its own, 127.0.0.N (N from hack/nodehost.py's registry). Given an IP as its hostname,
the kubelet reports it as both InternalIP and Hostname without a lookup (an explicit loopback
`--node-ip` is refused), binds its API there, and the apiserver, which prefers those address
types, dials it there for logs, exec and port-forward. Pods get a CNI bridge without a gateway:
the Node needs a network to be Ready, the workloads need none.

Usage: python hack/kubenode.py {up,down,status} [--dir CLUSTER_DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import attrs
from controlplane import DEFAULT_DIR, ControlPlane, ControlPlaneError, Pki, _alive
from nodehost import CACHE, Registry

REPO = Path(__file__).resolve().parent.parent
HACK_NODE = REPO / "hack" / "node"
CGROUP_FS = Path("/sys/fs/cgroup")
KUBELET_PORT = 10250  # the usual port, on the node's own address; another one if taken
# The taint a test session's node registers with (see tests/conftest.py: kube_node), and the
# toleration a pod needs to run there.
TEST_TAINT = {"key": "dynamo-snapshot.test/real-node", "value": "true", "effect": "NoSchedule"}
TEST_TOLERATION = {
    "key": TEST_TAINT["key"],
    "operator": "Equal",
    "value": TEST_TAINT["value"],
    "effect": TEST_TAINT["effect"],
}
READY_TIMEOUT = 120.0


class NodeError(ControlPlaneError):
    """The node could not be started or stopped; the message says why."""


def _log(msg: str) -> None:
    print(f"kubenode: {msg}", file=sys.stderr, flush=True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _epoch_second(rfc3339: object) -> int:
    """Seconds since the epoch of an API time ("2026-01-02T03:04:05Z"); 0 when absent."""
    try:
        parsed = datetime.datetime.fromisoformat(str(rfc3339).replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(parsed.timestamp())


def _wait_past_second(second: int) -> None:
    """Return once the wall clock has left `second` (for names and stamps with one-second
    resolution)."""
    while int(time.time()) == second:
        time.sleep(0.01)


def _pid_running(pidfile: Path, comm: str) -> int | None:
    """The PID in `pidfile` if that process is alive and is `comm` (never a recycled PID)."""
    try:
        pid = int(pidfile.read_text())
        if Path(f"/proc/{pid}/comm").read_text().strip() != comm[:15]:
            return None
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


@attrs.define
class NodePaths:
    """Everything of one node derives from its directory and its index N."""

    dir: Path
    index: int

    @property
    def name(self) -> str:
        return f"127.0.0.{self.index}"

    @property
    def cri_run(self) -> Path:
        return self.dir / "cri"

    @property
    def cri_socket(self) -> Path:
        return self.cri_run / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.dir / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.dir / "pod-logs"

    @property
    def pidfile(self) -> Path:
        return self.dir / "kubelet.pid"

    @property
    def cgroup_root(self) -> str:
        return f"dynamo-snapshot-kubelet-{self.index}"

    @property
    def bridge(self) -> str:
        return f"dsnap{self.index}"

    @property
    def network(self) -> str:
        return f"dynamo-snapshot-{self.index}"

    def alive(self) -> bool:
        return bool(
            _pid_running(self.pidfile, "kubelet")
            or _pid_running(self.cri_run / "containerd.pid", "containerd")
        )

    def stop_and_clean(self) -> None:
        """Stop the kubelet and its containerd by PID and remove every trace on the host: pod
        containers, mounts, cgroups, the CNI bridge, log links. Safe on a half-started node."""
        pid = _pid_running(self.pidfile, "kubelet")
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        if self.cri_run.exists():
            down = subprocess.run(
                ["bash", str(HACK_NODE / "node-down.sh")],
                env={**os.environ, "DYNAMO_SNAPSHOT_NODE_RUN": str(self.cri_run)},
                capture_output=True,
                text=True,
                check=False,
            )
            if down.returncode != 0:
                raise NodeError(f"node-down.sh failed for {self.cri_run}: {down.stderr[-2000:]}")
        if Path(f"/sys/class/net/{self.bridge}").exists():
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, check=False)
        # Secret and projected volumes are tmpfs mounts under the kubelet's root, which it has
        # bind-mounted onto itself (shared): unmount until nothing is left.
        for _ in range(5):
            mounts = _mounts_under(self.dir)
            if not mounts:
                break
            for m in mounts:
                subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        for hierarchy in CGROUP_FS.iterdir():
            top = hierarchy / self.cgroup_root
            if top.is_dir():
                for d in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                    if d.is_dir():
                        with contextlib.suppress(OSError):
                            d.rmdir()
                with contextlib.suppress(OSError):
                    top.rmdir()
        links = Path("/var/log/containers")
        if links.is_dir():
            for link in links.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(str(self.pod_logs)):
                        link.unlink()
        # A pod killed with its node never had its CNI DEL: its cache entry stays behind.
        for f in self._cni_cache_entries():
            f.unlink(missing_ok=True)
        if not _mounts_under(self.dir):
            for d in (self.root, self.pod_logs, self.dir / "cni-ipam"):
                subprocess.run(["rm", "-rf", str(d)], check=False)

    def leftovers(self) -> list[str]:
        """What of this node is still on the host (empty after stop_and_clean)."""
        found = []
        if _pid_running(self.pidfile, "kubelet"):
            found.append("kubelet process")
        if _pid_running(self.cri_run / "containerd.pid", "containerd"):
            found.append("containerd process")
        found += [f"mount {m}" for m in _mounts_under(self.dir)]
        found += [
            f"cgroup {h / self.cgroup_root}"
            for h in CGROUP_FS.iterdir()
            if (h / self.cgroup_root).exists()
        ]
        if Path(f"/sys/class/net/{self.bridge}").exists():
            found.append(f"interface {self.bridge}")
        found += [f"CNI cache {f}" for f in self._cni_cache_entries()]
        return found

    def _cni_cache_entries(self) -> list[Path]:
        """libcni's result cache (a fixed path) entries of pods whose network namespace was ours."""
        entries = []
        results = Path("/var/lib/cni/results")
        for f in results.iterdir() if results.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                if json.loads(f.read_text()).get("netns", "").startswith(f"{self.dir}/"):
                    entries.append(f)
        return entries


@attrs.define
class KubeNode:
    """The kubelet node of one local cluster, in `<cluster dir>/node`."""

    cluster: ControlPlane
    dir: Path
    index: int = 0
    port: int = KUBELET_PORT
    # Taints the Node registers with (only on its first registration in a cluster).
    taints: list[dict[str, str]] = attrs.field(factory=list)
    _child: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)
    _last_checkpoint_second: int = attrs.field(default=0, init=False)

    @classmethod
    def of(cls, cluster: ControlPlane) -> KubeNode:
        node = cls(cluster=cluster, dir=cluster.dir / "node")
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads((node.dir / "state.json").read_text())
            node.index, node.port = int(state["index"]), int(state["port"])
        return node

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.dir, self.index)

    @property
    def name(self) -> str:
        """The Node's name, which is also its address (127.0.0.N)."""
        return self.paths.name

    @property
    def url(self) -> str:
        """The kubelet's API (authenticated: a client certificate signed by the cluster CA)."""
        return f"https://{self.name}:{self.port}"

    @property
    def cri_socket(self) -> Path:
        return self.paths.cri_socket

    @property
    def kubelet_root(self) -> Path:
        return self.paths.root

    @property
    def pod_logs(self) -> Path:
        return self.paths.pod_logs

    @property
    def kubeconfig(self) -> Path:
        """The node's own credentials (system:node:<name>)."""
        return self.dir / "kubelet.kubeconfig"

    def pid(self) -> int | None:
        if self._child is not None:
            return self._child.pid if self._child.poll() is None else None
        return _pid_running(self.paths.pidfile, "kubelet")

    # ----- lifecycle -------------------------------------------------------------------------

    def up(self) -> None:
        """Start the node, or reuse it when its kubelet runs and the Node is Ready."""
        # The kubelet binds unix sockets under its root, the longest being
        # pod-resources/<10 digits>; a socket path is limited to 107 bytes.
        longest = len(str(self.kubelet_root / "pod-resources" / ("9" * 10)))
        if longest > 107:
            raise NodeError(
                f"the node directory {self.dir} is too long for the kubelet's unix sockets"
                f" ({longest} > 107 bytes): use a cluster directory with a shorter path"
            )
        if not self.cluster.ports or not self.cluster.healthy():
            raise NodeError(f"no running control plane in {self.cluster.dir}: start it first")
        registry = Registry()
        with registry.locked():
            self._forget_dead_nodes(registry)
            if self.index and registry.index_of(self.dir) == self.index and self._healthy():
                _log(f"reusing Ready node {self.name}")
                return
            if self.index:
                self.paths.stop_and_clean()
            t0 = time.monotonic()
            self.index = registry.allocate(self.dir)
            try:
                self._start()
            except BaseException:
                with contextlib.suppress(Exception):
                    self.paths.stop_and_clean()
                registry.release(self.index)
                raise
            _log(f"node {self.name} Ready in {time.monotonic() - t0:.1f} s")

    def down(self) -> list[str]:
        """Stop the node and remove its traces; the last of our nodes also restores the host.
        Returns the problems found (nothing left behind when empty)."""
        registry = Registry()
        with registry.locked():
            index = registry.index_of(self.dir) or self.index
            if not index:
                return []
            self.index = index
            self.paths.stop_and_clean()
            if self._child is not None:
                self._child.wait()  # reap our own child, so it cannot linger as a zombie
                self._child = None
            problems = self.paths.leftovers()
            problems += registry.release(index)
            (self.dir / "state.json").unlink(missing_ok=True)
            return problems

    def _forget_dead_nodes(self, registry: Registry) -> None:
        """Clean up after nodes whose processes are gone (a killed test session)."""
        for n, d in registry.entries().items():
            if d != self.dir and not NodePaths(d, n).alive():
                _log(f"cleaning up after dead node 127.0.0.{n} ({d})")
                NodePaths(d, n).stop_and_clean()
                registry.release(n)

    def _healthy(self) -> bool:
        return self.pid() is not None and self.ready()

    def ready(self, after_second: int | None = None) -> bool:
        """Whether the Node is Ready; with `after_second`, only as reported by a kubelet in a
        later second (the heartbeat has one-second resolution). A kubelet of an earlier run of
        this node left its Node Ready, and the node lifecycle controller only says otherwise
        some 40 s after it stopped."""
        try:
            node = self.cluster.request("GET", f"/api/v1/nodes/{self.name}")
        except (OSError, urllib.error.URLError):
            return False
        status = node.get("status")
        conditions = status.get("conditions", []) if isinstance(status, dict) else []
        return any(
            c.get("type") == "Ready"
            and c.get("status") == "True"
            and (after_second is None or _epoch_second(c.get("lastHeartbeatTime")) > after_second)
            for c in conditions
        )

    def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.port = KUBELET_PORT if _port_free(self.name, KUBELET_PORT) else _free_port(self.name)
        (self.dir / "state.json").write_text(json.dumps({"index": self.index, "port": self.port}))
        kubelet = self.cluster.kube_bin / "kubelet"
        if not os.access(kubelet, os.X_OK):
            raise NodeError(f"{kubelet} is missing: run hack/build-kube.sh")
        self._certificates()
        self._start_containerd()
        self._cgroup_root()
        config = self.dir / "kubelet-config.json"
        config.write_text(json.dumps(self._kubelet_config(), indent=2))
        # Every heartbeat of an earlier kubelet of this name is stamped `earlier` at the latest;
        # starting ours in a later second tells its heartbeats apart (see `ready`).
        earlier = int(time.time())
        _wait_past_second(earlier)
        log = open(self.dir / "kubelet.log", "ab")  # noqa: SIM115 - handed to the child
        self._child = subprocess.Popen(
            [
                str(kubelet),
                "--config",
                str(config),
                "--kubeconfig",
                str(self.kubeconfig),
                "--root-dir",
                str(self.kubelet_root),
                # Defaults to /var/lib/kubelet/pki even with --root-dir.
                "--cert-dir",
                str(self.dir / "pki"),
                # An IP as hostname: reported as InternalIP and Hostname with no DNS lookup.
                "--hostname-override",
                self.name,
                "--v=1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.dir,
        )
        log.close()
        self.paths.pidfile.write_text(str(self._child.pid))
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready(after_second=earlier):
            if self.pid() is None:
                tail = (self.dir / "kubelet.log").read_text(errors="replace")[-3000:]
                raise NodeError(f"the kubelet exited before its Node was Ready:\n{tail}")
            if time.monotonic() > deadline:
                raise NodeError(
                    f"Node {self.name} not Ready after {READY_TIMEOUT:.0f} s;"
                    f" see {self.dir / 'kubelet.log'}"
                )
            time.sleep(0.2)

    def _certificates(self) -> None:
        pki = Pki(self.dir / "pki", ca_dir=self.cluster.pki.dir)
        pki.issue("kubelet-client", f"/O=system:nodes/CN=system:node:{self.name}")
        pki.issue("kubelet-serving", f"/CN={self.name}", f"IP:{self.name}")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "node",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.cluster.server,
                        "certificate-authority": str(self.cluster.pki.ca),
                    },
                }
            ],
            "users": [
                {
                    "name": f"system:node:{self.name}",
                    "user": {
                        "client-certificate": str(pki.cert("kubelet-client")),
                        "client-key": str(pki.key("kubelet-client")),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "node",
                    "context": {"cluster": "local", "user": f"system:node:{self.name}"},
                }
            ],
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def _start_containerd(self) -> None:
        up = subprocess.run(
            ["bash", str(HACK_NODE / "node-up.sh")],
            env={**os.environ, "DYNAMO_SNAPSHOT_NODE_RUN": str(self.paths.cri_run)},
            capture_output=True,
            text=True,
            check=False,
        )
        if up.returncode != 0:
            raise NodeError(f"the node's containerd did not start: {up.stderr[-3000:]}")
        # A bridge without gateway or masquerade: pods get an interface and an address, as CRI
        # needs, and no route anywhere. containerd picks the file up without a restart.
        conflist = {
            "cniVersion": "1.0.0",
            "name": self.paths.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.paths.bridge,
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": f"10.244.{self.index}.0/24"}]],
                        "dataDir": str(self.dir / "cni-ipam"),
                    },
                }
            ],
        }
        net_d = self.paths.cri_run / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        (net_d / "10-bridge.conflist").write_text(json.dumps(conflist, indent=2))

    def _cgroup_root(self) -> None:
        """The kubelet's cgroup root must exist in every hierarchy; our own per node, so that two
        kubelets never manage (and clean up) each other's pods."""
        for hierarchy in CGROUP_FS.iterdir():
            if not (hierarchy / "cgroup.procs").exists():
                continue
            top = hierarchy / self.paths.cgroup_root
            top.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":  # a new v1 cpuset starts empty: inherit the root's
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (top / f).write_text((hierarchy / f).read_text())

    def _kubelet_config(self) -> dict[str, object]:
        pki = Pki(self.dir / "pki", ca_dir=self.cluster.pki.dir)
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.name,
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": self.name,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True, "cacheTTL": "10s"},
                "x509": {"clientCAFile": str(self.cluster.pki.ca)},
            },
            "authorization": {
                "mode": "Webhook",
                "webhook": {"cacheAuthorizedTTL": "10s", "cacheUnauthorizedTTL": "5s"},
            },
            "tlsCertFile": str(pki.cert("kubelet-serving")),
            "tlsPrivateKeyFile": str(pki.key("kubelet-serving")),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "containerRuntimeEndpoint": f"unix://{self.cri_socket}",
            # cgroup v1 with the cgroupfs driver on these machines.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "cgroupRoot": f"/{self.paths.cgroup_root}",
            # The VM's bounding set lacks CAP_SYS_RESOURCE: a negative score would fail.
            "oomScoreAdj": 0,
            "podLogsDir": str(self.pod_logs),
            # Else the FlexVolume prober creates /usr/libexec/kubernetes/...
            "volumePluginDir": str(self.dir / "volume-plugins"),
            "hairpinMode": "none",
            # Images are imported, never pulled: garbage collection must not remove them, and
            # a full shared disk must not evict the test pods.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "shutdownGracePeriod": "0s",
            "registerWithTaints": self.taints,
        }

    # ----- for tests and scripts -------------------------------------------------------------

    def ctr(self, *args: str) -> str:
        """Run the node's `ctr` in the k8s.io namespace (where CRI keeps images and containers)."""
        ctr = CACHE / "node" / "bin" / "ctr"
        proc = subprocess.run(
            [str(ctr), "--address", str(self.cri_socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def import_image(self, tarball: Path) -> None:
        """Load an OCI image-layout or docker-archive tarball into the kubelet's containerd, for
        pods with `imagePullPolicy: Never` (the pause and workload images are already there)."""
        self.ctr("images", "import", str(tarball))

    def checkpoint(self, namespace: str, pod: str, container: str, timeout: float = 300) -> Path:
        """Checkpoint a running container through the kubelet's own API (KEP-2008), as a user
        would without this project, with the admin certificate; the archive's path. Its name has
        one-second resolution (a second call within the same second would overwrite the first
        archive), so a call waits for the next second when the previous one ended in this one.
        (Ended, not began: the kubelet stamps the name during the call, which may cross into
        the next second; the second is only known to be past once the answer is in.)"""
        _wait_past_second(self._last_checkpoint_second)
        url = f"{self.url}/checkpoint/{namespace}/{pod}/{container}?timeout={int(timeout)}"
        ctx = ssl.create_default_context(cafile=str(self.cluster.pki.ca))
        ctx.load_cert_chain(str(self.cluster.pki.cert("admin")), str(self.cluster.pki.key("admin")))
        request = urllib.request.Request(url, method="POST")
        try:
            with urllib.request.urlopen(request, context=ctx, timeout=timeout + 30) as r:
                items = json.loads(r.read())["items"]
        finally:
            self._last_checkpoint_second = int(time.time())
        return Path(items[0])

    def empty_dir(self, pod_uid: str, volume: str) -> Path:
        """Where an emptyDir volume of a pod on this node lives on the host."""
        return self.kubelet_root / "pods" / pod_uid / "volumes" / "kubernetes.io~empty-dir" / volume

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """The container's output as the kubelet stored it (all restarts, CRI prefix removed)."""
        lines = []
        for f in sorted(self.pod_logs.glob(f"{namespace}_{pod}_*/{container}/*.log")):
            for line in f.read_text(errors="replace").splitlines():
                # "<RFC3339 time> <stream> <P|F> <text>"
                parts = line.split(" ", 3)
                lines.append(parts[3] if len(parts) == 4 else "")
        return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"cluster directory (default {DEFAULT_DIR})"
    )
    args = parser.parse_args(argv)
    node = KubeNode.of(ControlPlane.load(args.dir))
    try:
        if args.command == "up":
            node.up()
            print(node.name)
        elif args.command == "down":
            problems = node.down()
            for p in problems:
                _log(f"left behind: {p}")
            if problems:
                return 1
            _log("node stopped; nothing of it is left on the host")
        else:
            pid = node.pid() if node.index else None
            state = f"running pid {pid}" if pid else "stopped"
            ready = "Ready" if pid and node.ready() else "not Ready"
            print(f"{'kubelet':26} {state}")
            if pid:
                print(f"{'node ' + node.name:26} {ready} (CRI {node.cri_socket})")
    except ControlPlaneError as e:
        print(f"kubenode: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
