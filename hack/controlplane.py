"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, each a process of ours, started and stopped by PID.

The same code serves `just up` (a long-lived cluster in `.run/cluster` that outlives the command)
and the pytest session fixture (a throw-away cluster in a temporary directory). The control plane
alone has no node: hack/kubenode.py adds a real kubelet. Authorization is Node,RBAC with the
NodeRestriction admission plugin, as on a real cluster; Jobs, garbage collection, namespaces and
ServiceAccounts work because the controller-manager runs.

Usage: python hack/controlplane.py {up,down,status,kubeconfig} [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
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

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".run" / "cluster"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.0.0.0/24"
# Bumped whenever the components' flags change: a running cluster started with other flags is
# restarted by `up` instead of being reused.
LAYOUT = 2
# The user the apiserver authenticates as towards kubelets, and the ClusterRoleBinding giving it
# the kubelet API (logs, exec, checkpoint).
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
KUBELET_API_BINDING: dict[str, object] = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "dynamo-snapshot:apiserver-kubelet-client"},
    "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:kubelet-api-admin",
    },
    "subjects": [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": APISERVER_KUBELET_CLIENT}
    ],
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message says which part."""


def _log(msg: str) -> None:
    print(f"controlplane: {msg}", file=sys.stderr, flush=True)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports. All sockets stay bound until every port is chosen: binding
    port 0 again right after closing a socket may hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _run(args: Sequence[str], **kw: object) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    out: str = proc.stdout
    return out


def ensure_binaries() -> tuple[Path, Path]:
    """Build or reuse the Kubernetes binaries and etcd; return (kube bin dir, etcd binary)."""
    kube_bin = Path(_run(["bash", str(REPO / "hack" / "build-kube.sh")]).strip().splitlines()[-1])
    etcd = Path(_run(["bash", str(REPO / "hack" / "ensure-etcd.sh")]).strip().splitlines()[-1])
    return kube_bin, etcd


@attrs.define
class Pki:
    """Certificates and keys made with the openssl CLI. `ca_dir` holds the CA that signs them
    (the cluster's own PKI when None); a node keeps its certificates apart from the cluster's."""

    dir: Path
    ca_dir: Path | None = None

    @property
    def ca(self) -> Path:
        return (self.ca_dir or self.dir) / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return (self.ca_dir or self.dir) / "ca.key"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def generate(self) -> None:
        """The cluster's CA and component certificates; each one only when missing, so a cluster
        directory from an older checkout gains the certificates it lacks and keeps the rest."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ossl = "openssl"
        if not self.ca.exists():
            _run(
                [
                    ossl,
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "3650",
                    "-keyout",
                    str(self.ca_key),
                    "-out",
                    str(self.ca),
                    "-subj",
                    "/CN=dynamo-snapshot-local-ca",
                    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA without key usage
                    # is refused, as by the in-cluster image's components.
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                ]
            )
        names = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
        sans = ",".join([*(f"DNS:{n}" for n in names), "IP:127.0.0.1", "IP:10.0.0.1"])
        wanted = {
            "apiserver": ("/CN=kube-apiserver", sans),
            "admin": ("/O=system:masters/CN=admin", None),
            "controller-manager": ("/CN=system:kube-controller-manager", None),
            "scheduler": ("/CN=system:kube-scheduler", None),
            # What the apiserver presents to kubelets (logs, exec, checkpoint); RBAC grants it
            # system:kubelet-api-admin, as on a kubeadm cluster.
            "apiserver-kubelet-client": (f"/CN={APISERVER_KUBELET_CLIENT}", None),
        }
        for name, (subject, alt) in wanted.items():
            if not self.cert(name).exists():
                self.issue(name, subject, alt)
        if not self.key("sa").exists():
            _run([ossl, "genrsa", "-out", str(self.key("sa")), "2048"])
            _run(
                [
                    ossl,
                    "rsa",
                    "-in",
                    str(self.key("sa")),
                    "-pubout",
                    "-out",
                    str(self.dir / "sa.pub"),
                ]
            )

    def issue(self, name: str, subject: str, sans: str | None = None) -> None:
        """A key and a certificate signed by the CA: for serving when `sans` is given (the
        subjectAltName list), else for client authentication."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        csr = self.dir / f"{name}.csr"
        _run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(self.key(name)),
                "-out",
                str(csr),
                "-subj",
                subject,
            ]
        )
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
        lines.append("extendedKeyUsage=serverAuth" if sans else "extendedKeyUsage=clientAuth")
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(self.ca),
                "-CAkey",
                str(self.ca_key),
                "-CAcreateserial",
                "-CAserial",
                str(self.dir / "ca.srl"),
                "-days",
                "3650",
                "-out",
                str(self.cert(name)),
                "-extfile",
                str(ext),
            ]
        )
        csr.unlink()
        ext.unlink()


@attrs.define
class ControlPlane:
    """One local cluster rooted at `dir`. Ports and binary paths persist in `dir/state.json`, so a
    later process (`just down`, a test) can find and stop exactly what an earlier one started."""

    dir: Path
    kube_bin: Path = attrs.field(factory=Path)
    etcd_bin: Path = attrs.field(factory=Path)
    ports: dict[str, int] = attrs.field(factory=dict)
    layout: int = 0
    # Processes this very process started; others are found through their PID files.
    _children: dict[str, subprocess.Popen[bytes]] = attrs.field(factory=dict, init=False)

    @property
    def pki(self) -> Pki:
        return Pki(self.dir / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    def kubectl_path(self) -> Path:
        return self.kube_bin / "kubectl"

    # ----- state -----------------------------------------------------------------------------

    @classmethod
    def load(cls, dir: Path) -> ControlPlane:
        state = dir / "state.json"
        if not state.exists():
            return cls(dir=dir)
        data = json.loads(state.read_text())
        return cls(
            dir=dir,
            kube_bin=Path(data["kube_bin"]),
            etcd_bin=Path(data["etcd_bin"]),
            ports={k: int(v) for k, v in data["ports"].items()},
            layout=int(data.get("layout", 0)),
        )

    def _save(self) -> None:
        (self.dir / "state.json").write_text(
            json.dumps(
                {
                    "kube_bin": str(self.kube_bin),
                    "etcd_bin": str(self.etcd_bin),
                    "ports": self.ports,
                    "layout": self.layout,
                },
                indent=2,
            )
        )

    def _pidfile(self, component: str) -> Path:
        return self.dir / f"{component}.pid"

    def pid(self, component: str) -> int | None:
        child = self._children.get(component)
        if child is not None:
            # Started by this process: the Popen knows for sure, even mid-exec.
            return child.pid if child.poll() is None else None
        try:
            pid = int(self._pidfile(component).read_text())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        # A recycled PID must not be mistaken for ours: check the process is the component.
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        return pid if comm == component[:15] else None

    # ----- lifecycle -------------------------------------------------------------------------

    def up(self) -> None:
        """Start every component, or reuse a healthy running cluster."""
        if (
            self.ports
            and self.layout == LAYOUT
            and all(self.pid(c) for c in COMPONENTS)
            and self.healthy()
        ):
            _log(f"reusing healthy cluster in {self.dir}")
            return
        self.down()
        t0 = time.monotonic()
        self.kube_bin, self.etcd_bin = ensure_binaries()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pki.generate()
        # Free ports are picked by binding port 0 and letting go, so another process may take one
        # before our component binds it: start again on fresh ports rather than fail.
        for attempt in range(1, 4):
            try:
                self._start_all()
                break
            except ControlPlaneError as err:
                self.down()
                if attempt == 3:
                    raise
                _log(f"start attempt {attempt} failed, retrying on fresh ports: {str(err)[:300]}")
        _log(f"cluster up in {time.monotonic() - t0:.1f} s; kubeconfig {self.kubeconfig}")

    def _start_all(self) -> None:
        names = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler")
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self.layout = LAYOUT
        self._save()
        self._write_kubeconfig(self.kubeconfig, "admin")
        self._write_kubeconfig(self.dir / "controller-manager.kubeconfig", "controller-manager")
        self._write_kubeconfig(self.dir / "scheduler.kubeconfig", "scheduler")
        self._start("etcd")
        self._wait(self._etcd_healthy, "etcd", 30)
        self.start_apiserver()
        self.apply("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", KUBELET_API_BINDING)
        self._start("kube-controller-manager")
        self._start("kube-scheduler")
        self._wait(
            self._default_serviceaccount_exists,
            "kube-controller-manager (default ServiceAccount)",
            60,
        )

    def down(self) -> None:
        """Stop every component we started, by PID, apiserver clients first and etcd last."""
        for component in reversed(COMPONENTS):
            self._stop(component)

    def start_apiserver(self) -> None:
        self._start("kube-apiserver")
        self._wait(self.healthy, "kube-apiserver /readyz", 90)

    def stop_apiserver(self) -> None:
        self._stop("kube-apiserver")

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.server}/readyz", context=self._ssl(), timeout=3
            ) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError, KeyError):
            return False

    def request(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> dict[str, object]:
        """One admin request to the apiserver; the decoded JSON answer. Errors raise HTTPError."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as r:
            answer: dict[str, object] = json.loads(r.read() or b"{}")
            return answer

    def apply(self, collection: str, obj: dict[str, object]) -> None:
        """Create `obj` in `collection` (an API path) unless it exists already."""
        try:
            self.request("POST", collection, obj)
        except urllib.error.HTTPError as err:
            if err.code != 409:
                raise ControlPlaneError(
                    f"creating {collection}: {err.code} {err.read()[:500]!r}"
                ) from err

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision, so every older resourceVersion answers 410 Gone
        once the apiserver's watch cache no longer covers it. Returns the compacted revision."""
        answer = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        header = answer["header"]
        assert isinstance(header, dict)
        revision = int(header["revision"])
        self._etcd_post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.kubectl_path()), "--kubeconfig", str(self.kubeconfig)]
        if as_user:
            cmd += ["--as", as_user]
        proc = subprocess.run(
            cmd + list(args), input=input, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    # ----- internals -------------------------------------------------------------------------

    def _args(self, component: str) -> list[str]:
        pki, p = self.pki, self.ports
        if component == "etcd":
            return [
                str(self.etcd_bin),
                "--name",
                "local",
                "--data-dir",
                str(self.dir / "etcd-data"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{p['etcd-peer']}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{p['etcd-peer']}",
                "--initial-cluster",
                f"local=http://127.0.0.1:{p['etcd-peer']}",
                # The disk here is noisy and this data is throw-away: fsync buys nothing.
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ]
        if component == "kube-apiserver":
            return [
                str(self.kube_bin / component),
                "--etcd-servers",
                self.etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(p["apiserver"]),
                "--cert-dir",
                str(self.dir / "apiserver-certs"),
                "--tls-cert-file",
                str(pki.cert("apiserver")),
                "--tls-private-key-file",
                str(pki.key("apiserver")),
                "--client-ca-file",
                str(pki.ca),
                # As on a real cluster: kubelets are authorized by the Node authorizer and
                # confined to their own Node and pods by the NodeRestriction admission plugin.
                "--authorization-mode",
                "Node,RBAC",
                "--enable-admission-plugins",
                "NodeRestriction",
                # The apiserver dials a kubelet (logs, exec, port-forward) at an address of its
                # Node. Ours are loopback IPs in both fields, so no name is ever looked up.
                "--kubelet-preferred-address-types",
                "InternalIP,Hostname",
                "--kubelet-certificate-authority",
                str(pki.ca),
                "--kubelet-client-certificate",
                str(pki.cert("apiserver-kubelet-client")),
                "--kubelet-client-key",
                str(pki.key("apiserver-kubelet-client")),
                "--service-account-key-file",
                str(self.dir / "pki" / "sa.pub"),
                "--service-account-signing-key-file",
                str(pki.key("sa")),
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ]
        if component == "kube-controller-manager":
            return [
                str(self.kube_bin / component),
                "--kubeconfig",
                str(self.dir / "controller-manager.kubeconfig"),
                "--authentication-kubeconfig",
                str(self.dir / "controller-manager.kubeconfig"),
                "--authorization-kubeconfig",
                str(self.dir / "controller-manager.kubeconfig"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(p["kcm"]),
                "--leader-elect=false",
                "--controllers",
                "*",
                "--service-account-private-key-file",
                str(pki.key("sa")),
                "--root-ca-file",
                str(pki.ca),
                "--use-service-account-credentials=true",
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--profiling=false",
                "--v=1",
            ]
        if component == "kube-scheduler":
            return [
                str(self.kube_bin / component),
                "--kubeconfig",
                str(self.dir / "scheduler.kubeconfig"),
                "--authentication-kubeconfig",
                str(self.dir / "scheduler.kubeconfig"),
                "--authorization-kubeconfig",
                str(self.dir / "scheduler.kubeconfig"),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(p["scheduler"]),
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ]
        raise ValueError(component)

    def _start(self, component: str) -> None:
        log = open(self.dir / f"{component}.log", "ab")  # noqa: SIM115 - handed to the child
        # A new session: `just up` returns while the cluster keeps running, and a Ctrl-C in the
        # terminal does not reach the components.
        proc = subprocess.Popen(
            self._args(component),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.dir,
        )
        log.close()
        self._children[component] = proc
        self._pidfile(component).write_text(str(proc.pid))

    def _stop(self, component: str, timeout: float = 20) -> None:
        pid = self.pid(component)
        self._pidfile(component).unlink(missing_ok=True)
        child = self._children.pop(component, None)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, child) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid, child):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid, child):
                time.sleep(0.05)

    def _wait(self, check: object, what: str, timeout: float) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            for component in COMPONENTS:
                if self._pidfile(component).exists() and self.pid(component) is None:
                    tail = (self.dir / f"{component}.log").read_text(errors="replace")[-3000:]
                    raise ControlPlaneError(f"{component} exited while waiting for {what}:\n{tail}")
            time.sleep(0.2)
        raise ControlPlaneError(
            f"timed out after {timeout:.0f} s waiting for {what}; logs in {self.dir}"
        )

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        ctx.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        return ctx

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        req = urllib.request.Request(
            self.etcd_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            result: dict[str, object] = json.loads(r.read())
            return result

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _default_serviceaccount_exists(self) -> bool:
        req = urllib.request.Request(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        )
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=3) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def _write_kubeconfig(self, path: Path, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "local",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki.ca)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(self.pki.cert(user)),
                        "client-key": str(self.pki.key(user)),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)


def _alive(pid: int, child: subprocess.Popen[bytes] | None = None) -> bool:
    if child is not None:
        return child.poll() is None  # reaps our own child, so it cannot linger as a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "kubeconfig"])
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})"
    )
    args = parser.parse_args(argv)
    cp = ControlPlane.load(args.dir)
    try:
        if args.command == "up":
            cp.up()
            print(cp.kubeconfig)
        elif args.command == "down":
            cp.down()
            _log(f"stopped every component in {args.dir}")
        elif args.command == "kubeconfig":
            print(cp.kubeconfig)
        else:
            for c in COMPONENTS:
                print(f"{c:26} {'running pid ' + str(cp.pid(c)) if cp.pid(c) else 'stopped'}")
            print(f"{'apiserver /readyz':26} {'ok' if cp.ports and cp.healthy() else 'not ready'}")
    except ControlPlaneError as e:
        print(f"controlplane: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
