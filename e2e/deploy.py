"""Deploy dynamo-snapshot to the cluster in KUBECONFIG as an operator would; wait until it runs.

`just deploy` / `just undeploy` and the e2e suite use this module. It renders a kustomize overlay
(`manifests/overlays/<overlay>`), applies it with server-side apply, and waits with progress until
every Deployment is Available and the agent DaemonSet has a Ready pod on every node. Both
directions are idempotent.

On the local cluster of this repository (`just up`: hack/controlplane.py with its kubelet node,
hack/kubenode.py) it also builds the image (hack/image/build.sh), imports it into the node's
containerd, and fills in what only the running cluster knows:
- the apiserver's loopback address for in-cluster config (no kube-proxy routes the Service IP);
- the node's own loopback address (127.0.0.N) for the components' metrics and health binds and the
  kubelet's probes, so that two local clusters on one machine never share a port;
- the node's containerd socket and root, the kubelet's seccomp directory and the checkpoint storage
  (under the cluster directory), each mounted into the agent at its host path, because the paths
  the runtime reports and the checkpoint location it is given are host paths.
The rendered manifests are kept in `<cluster dir>/deploy.yaml` for inspection.

Usage: python -m e2e.deploy {up,down} [--overlay local|kind] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "hack") not in sys.path:  # hack/kubenode.py, hack/controlplane.py
    sys.path.insert(0, str(REPO / "hack"))

SYSTEM_NAMESPACE = "dynamo-snapshot-system"
DEPLOYMENTS = ("dynamo-checkpoint-controller", "dynamo-podsnapshot-controller")
DAEMONSET = "dynamo-snapshot-agent"
CRDS = (
    "dynamocheckpoints.nvidia.com",
    "podsnapshots.nvidia.com",
    "podsnapshotcontents.nvidia.com",
)
IMAGE_DIGEST_ANNOTATION = "dynamo-snapshot.dev/image-digest"
Obj = dict[str, Any]


class DeployError(Exception):
    """Deploying failed; the message says what and what was seen."""


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise DeployError(f"kubectl {' '.join(args[:3])} ... failed: {proc.stderr.strip()}")
        return proc.stdout

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self(*args, input=input, check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def server(self) -> str:
        return self("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")


@dataclass(frozen=True)
class LocalNode:
    """The kubelet node of a local cluster (hack/kubenode.py), seen from this host."""

    name: str  # also its loopback address, 127.0.0.N
    cluster_dir: Path
    cri_socket: Path
    kubelet_root: Path
    ctr: Path

    @property
    def cri_run(self) -> Path:
        return self.cri_socket.parent

    @property
    def containerd_root(self) -> Path:
        return self.cri_run / "root"

    @property
    def checkpoints(self) -> Path:
        """The agent's storage root on this host (SPEC §5: <base>/<id>/versions/<version>)."""
        return self.cluster_dir / "checkpoints"

    @property
    def seccomp_root(self) -> Path:
        return self.kubelet_root / "seccomp"

    def import_image(self, tarball: Path, reference: str, digest: str) -> bool:
        """Import unless containerd already holds this manifest under this name."""
        base = [str(self.ctr), "--address", str(self.cri_socket), "-n", "k8s.io", "images"]
        listed = subprocess.run(
            [*base, "ls", f"name=={reference}"], capture_output=True, text=True, check=False
        )
        if digest in listed.stdout:
            return False
        proc = subprocess.run(
            [*base, "import", str(tarball)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise DeployError(f"importing {reference} into {self.cri_socket}: {proc.stderr}")
        return True


def local_node(kubeconfig: Path) -> LocalNode | None:
    """The local cluster's node when KUBECONFIG is the admin kubeconfig of `just up` (or of a test
    cluster made by hack/controlplane.py), else None: then the cluster is someone else's."""
    cluster_dir = kubeconfig.resolve().parent
    if not (cluster_dir / "node" / "state.json").is_file():
        return None
    from controlplane import ControlPlane
    from kubenode import KubeNode
    from nodehost import CACHE

    node = KubeNode.of(ControlPlane.load(cluster_dir))
    if not node.index:
        return None
    return LocalNode(
        name=node.name,
        cluster_dir=cluster_dir,
        cri_socket=node.cri_socket,
        kubelet_root=node.kubelet_root,
        ctr=CACHE / "node" / "bin" / "ctr",
    )


# ----- rendering ------------------------------------------------------------------------------


def render(kubectl: Kubectl, overlay: str) -> list[Obj]:
    path = REPO / "manifests" / "overlays" / overlay
    if not path.is_dir():
        raise DeployError(f"no overlay {overlay!r} at {path}")
    return [o for o in yaml.safe_load_all(kubectl("kustomize", str(path))) if o]


def _containers(obj: Obj) -> Iterator[Obj]:
    spec = obj["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _set_env(container: Obj, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    env[:] = [e for e in env if e["name"] != name]
    env.append({"name": name, "value": value})


def _host_volume(obj: Obj, volume: str, host_path: Path, same_path: bool = True) -> None:
    """Point a hostPath volume at ``host_path``; with ``same_path`` mount it at that very path in
    the containers too (paths the runtime reports or is given are host paths)."""
    spec = obj["spec"]["template"]["spec"]
    for v in spec["volumes"]:
        if v["name"] == volume:
            v["hostPath"]["path"] = str(host_path)
    if same_path:
        for c in _containers(obj):
            for m in c.get("volumeMounts", []):
                if m["name"] == volume:
                    m["mountPath"] = str(host_path)


def adapt_to_local(objs: list[Obj], node: LocalNode, apiserver: str, image_digest: str) -> None:
    """Fill in what only the running local cluster knows (see the module's doc)."""
    api = urlsplit(apiserver)
    for obj in objs:
        if obj["kind"] not in ("Deployment", "DaemonSet"):
            continue
        template = obj["spec"]["template"]
        # A new image under the same tag must roll the pods.
        template["metadata"].setdefault("annotations", {})[IMAGE_DIGEST_ANNOTATION] = image_digest
        for c in _containers(obj):
            _set_env(c, "KUBERNETES_SERVICE_HOST", api.hostname or "127.0.0.1")
            _set_env(c, "KUBERNETES_SERVICE_PORT", str(api.port or 443))
            c["args"] = [a.replace("=127.0.0.1:", f"={node.name}:") for a in c.get("args", [])]
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c and "httpGet" in c[probe]:
                    c[probe]["httpGet"]["host"] = node.name
        if obj["kind"] == "DaemonSet" and obj["metadata"]["name"] == DAEMONSET:
            agent = next(c for c in obj["spec"]["template"]["spec"]["containers"])
            _set_env(agent, "DYNAMO_SNAPSHOT_RUNTIME_ENDPOINT", f"unix://{node.cri_socket}")
            _set_env(agent, "DYNAMO_SNAPSHOT_STORAGE_ROOT", str(node.checkpoints))
            _host_volume(obj, "runtime-run", node.cri_run)
            _host_volume(obj, "runtime-root", node.containerd_root)
            _host_volume(obj, "checkpoints", node.checkpoints)
            _host_volume(obj, "kubelet-pods", node.kubelet_root / "pods")
            # Checkpoint Job pods name their seccomp profile relative to the kubelet's root.
            _host_volume(obj, "host-seccomp", node.seccomp_root, same_path=False)


# ----- waiting --------------------------------------------------------------------------------


@dataclass
class Progress:
    """Prints a line only when it changed: progress without a flood."""

    out: Callable[[str], None] = print
    last: str = ""

    def show(self, line: str) -> None:
        if line != self.last:
            self.out(f"    {line}")
            self.last = line


def _pod_summary(pods: list[Obj]) -> str:
    parts = []
    for p in pods:
        statuses = p.get("status", {}).get("containerStatuses", []) or p.get("status", {}).get(
            "initContainerStatuses", []
        )
        why = p.get("status", {}).get("phase", "?")
        for s in statuses:
            state = s.get("state", {})
            if "waiting" in state:
                why = state["waiting"].get("reason", "Waiting")
            elif "terminated" in state:
                why = f"terminated {state['terminated'].get('reason', '')}"
            elif s.get("ready"):
                why = "Ready"
            else:
                why = "Running, not Ready"
        parts.append(f"{p['metadata']['name']}={why}")
    return ", ".join(parts) or "no pods yet"


def ready_nodes(kubectl: Kubectl) -> list[str]:
    """Nodes whose Ready condition is True: a node that went away (a local cluster's node from an
    earlier run, a drained cloud node) still counts in a DaemonSet's desired number."""
    out = []
    for n in kubectl.json("get", "nodes")["items"]:
        conditions = n.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            out.append(str(n["metadata"]["name"]))
    return out


def agents_ready(ds: Obj, pods: list[Obj], nodes: list[str]) -> bool:
    """An agent pod of the DaemonSet's current template, Ready, on every Ready node."""
    generation = str(ds["metadata"]["generation"])
    ready_on = set()
    for p in pods:
        labels = p["metadata"].get("labels", {})
        conditions = p.get("status", {}).get("conditions", [])
        if labels.get("pod-template-generation") == generation and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        ):
            ready_on.add(p["spec"].get("nodeName"))
    return bool(nodes) and set(nodes) <= ready_on


def workloads_ready(kubectl: Kubectl) -> tuple[bool, str]:
    """(everything Available and Ready, one line saying where each workload stands)."""
    objs = kubectl.json("get", "deploy,daemonset", "-n", SYSTEM_NAMESPACE)["items"]
    pods = kubectl.json("get", "pods", "-n", SYSTEM_NAMESPACE)["items"]
    ready, lines = True, []
    for name in (*DEPLOYMENTS, DAEMONSET):
        obj = next((o for o in objs if o["metadata"]["name"] == name), None)
        mine = [
            p for p in pods if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == name
        ]
        if obj is None:
            ready = False
            lines.append(f"{name}: missing")
            continue
        st = obj.get("status", {})
        if obj["kind"] == "Deployment":
            want = obj["spec"].get("replicas", 1)
            have = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
            ok = (
                st.get("observedGeneration") == obj["metadata"]["generation"]
                and have == (want, want)
                and st.get("replicas", 0) == want
            )
        else:
            ok = st.get("observedGeneration") == obj["metadata"]["generation"] and agents_ready(
                obj, mine, ready_nodes(kubectl)
            )
        ready &= ok
        lines.append(f"{name}: {'Ready' if ok else _pod_summary(mine)}")
    return ready, "; ".join(lines)


def wait_ready(kubectl: Kubectl, timeout: float, out: Callable[[str], None] = print) -> None:
    progress = Progress(out)
    deadline = time.monotonic() + timeout
    while True:
        ok, line = workloads_ready(kubectl)
        progress.show(line)
        if ok:
            return
        if time.monotonic() > deadline:
            events = kubectl(
                "get", "events", "-n", SYSTEM_NAMESPACE, "--sort-by=.lastTimestamp", check=False
            )
            tail = "\n".join(events.splitlines()[-15:]) + _crash_logs(kubectl)
            raise DeployError(
                f"not Ready after {timeout:.0f} s: {line}\n"
                f"last events in {SYSTEM_NAMESPACE}:\n{tail}"
            )
        time.sleep(1.0)


def _crash_logs(kubectl: Kubectl) -> str:
    """The last lines of every container that is not Ready: usually the one-line reason."""
    out = []
    for p in kubectl.json("get", "pods", "-n", SYSTEM_NAMESPACE)["items"]:
        for s in p.get("status", {}).get("containerStatuses", []):
            if s.get("ready"):
                continue
            name = p["metadata"]["name"]
            previous = "--previous" if s.get("restartCount", 0) else "--tail=5"
            log = kubectl(
                "logs", "-n", SYSTEM_NAMESPACE, name, "-c", s["name"], previous, check=False
            )
            lines = "\n      ".join(log.strip().splitlines()[-5:])
            out.append(f"\n  {name}/{s['name']}:\n      {lines}")
    return "".join(out)


# ----- up and down ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    kubeconfig: Path
    overlay: str
    node: LocalNode | None
    metrics: dict[str, str]  # component -> URL (or how to reach it)


def metrics_endpoints(objs: list[Obj], node: LocalNode | None) -> dict[str, str]:
    out = {}
    for obj in objs:
        if obj["kind"] not in ("Deployment", "DaemonSet"):
            continue
        c = obj["spec"]["template"]["spec"]["containers"][0]
        bind = next(
            (a.split("=", 1)[1] for a in c.get("args", []) if a.startswith("--metrics-bind")),
            ":8080",
        )
        host, port = bind.rsplit(":", 1)
        name = obj["metadata"]["name"]
        if node is not None or obj["spec"]["template"]["spec"].get("hostNetwork"):
            out[name] = f"http://{host or '<node>'}:{port}/metrics"
        else:
            kind = "deploy" if obj["kind"] == "Deployment" else "ds"
            out[name] = (
                f"kubectl -n {SYSTEM_NAMESPACE} port-forward {kind}/{name} {port}, "
                f"then http://127.0.0.1:{port}/metrics"
            )
    return out


def forget_stale_nodes(kubectl: Kubectl, node: LocalNode) -> None:
    """A local cluster has one node, named by the loopback address it got when it started; a
    cluster directory reused across runs keeps the Node objects of earlier runs, NotReady for
    ever, with pods bound to them that keep a Deployment from becoming Available. Delete those
    Nodes: the pod garbage collector then removes their pods and the Deployments reschedule."""
    ready = set(ready_nodes(kubectl))
    for n in kubectl.json("get", "nodes")["items"]:
        name = n["metadata"]["name"]
        if name != node.name and name not in ready:
            kubectl("delete", "node", name, "--ignore-not-found", "--wait=false")
            say(f"deleted Node {name}: a node of an earlier run of this local cluster")


def up(kubeconfig: Path, overlay: str = "local", timeout: float = 240.0) -> Deployed:
    kubectl = Kubectl(kubeconfig)
    node = local_node(kubeconfig) if overlay == "local" else None
    objs = render(kubectl, overlay)
    if node is not None:
        from e2e.support import build_image

        say("building the image (hack/image/build.sh; cached)")
        image = build_image()
        if node.import_image(image.tarball, image.reference, image.digest):
            say(f"imported {image.reference} ({image.digest[:19]}) into node {node.name}")
        adapt_to_local(objs, node, kubectl.server(), image.digest)
        forget_stale_nodes(kubectl, node)
        node.checkpoints.mkdir(mode=0o700, parents=True, exist_ok=True)
    rendered = yaml.safe_dump_all(objs, sort_keys=False)
    if node is not None:
        (node.cluster_dir / "deploy.yaml").write_text(rendered)
    say(f"applying manifests/overlays/{overlay} (server-side apply)")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=rendered)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in CRDS))
    say("waiting for the controllers and the agent to be Ready")
    wait_ready(kubectl, timeout)
    return Deployed(kubeconfig, overlay, node, metrics_endpoints(objs, node))


def down(kubeconfig: Path, overlay: str = "local", timeout: float = 120.0) -> None:
    """Delete the checkpoints first, while the controllers still run to release their finalizers,
    then everything the overlay created. Safe to run when nothing is deployed."""
    kubectl = Kubectl(kubeconfig)
    have_crds = kubectl("get", "crd", *CRDS, "--ignore-not-found", "-o", "name").split()
    if len(have_crds) == len(CRDS):
        say("deleting every DynamoCheckpoint and PodSnapshot")
        proc = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(kubeconfig),
                "delete",
                "dckpt,podsnap",
                "--all-namespaces",
                "--all",
                f"--timeout={int(timeout / 2)}s",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            # No controller left to drop the finalizers: drop them, the objects are going anyway.
            _drop_finalizers(kubectl)
    objs = render(kubectl, overlay)
    say(f"deleting what manifests/overlays/{overlay} created")
    kubectl(
        "delete",
        "--ignore-not-found",
        "--wait=true",
        f"--timeout={int(timeout)}s",
        "-f",
        "-",
        input=yaml.safe_dump_all(objs),
    )


def _drop_finalizers(kubectl: Kubectl) -> None:
    for item in kubectl.json("get", "podsnap", "-A").get("items", []):
        md = item["metadata"]
        kubectl(
            "patch",
            "podsnap",
            md["name"],
            "-n",
            md["namespace"],
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--overlay", default=os.environ.get("E2E_OVERLAY", "local"))
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args(argv)
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        print("deploy: KUBECONFIG is not set (`just deploy` sets it to the local cluster)")
        return 2
    try:
        if args.command == "up":
            deployed = up(Path(kubeconfig), args.overlay, args.timeout)
            say("dynamo-snapshot is Ready. Metrics (Prometheus text format):")
            for name, where in deployed.metrics.items():
                print(f"    {name:32} {where}")
        else:
            down(Path(kubeconfig), args.overlay)
            say("dynamo-snapshot is removed")
    except DeployError as e:
        print(f"deploy: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
