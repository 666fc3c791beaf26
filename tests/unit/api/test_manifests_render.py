"""The kustomize manifests, rendered offline (`kubectl kustomize`): every overlay builds, and
the security-relevant facts of SPEC §7 hold in what would be applied."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
OVERLAYS = ["default", "overlays/kind", "overlays/local"]
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (built-in kustomize) not on PATH")


def render(path: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


@pytest.fixture(scope="module", params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(MANIFESTS / request.param)


def test_every_namespaced_object_is_in_the_system_namespace(docs: list[dict[str, Any]]) -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == "dynamo-snapshot-system", doc["metadata"]
    kinds = sorted({d["kind"] for d in docs})
    # The local overlay drops the metrics Service (see test_metrics_service_scrapes_every_binary).
    no_service = {"Service"} if _host_network(docs) else set()
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "DaemonSet",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        }
        - no_service
    )


def _rules(docs: list[dict[str, Any]], name: str) -> set[tuple[str, str, str]]:
    rules = find(docs, "ClusterRole", name)["rules"]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_agent_cluster_role_is_exactly_the_least_privilege(docs: list[dict[str, Any]]) -> None:
    rules = _rules(docs, "dynamo-snapshot-agent")
    assert rules == {
        ("nvidia.com", "podsnapshotcontents", "get"),
        ("nvidia.com", "podsnapshotcontents", "list"),
        ("nvidia.com", "podsnapshotcontents", "watch"),
        ("nvidia.com", "podsnapshotcontents/status", "patch"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods", "patch"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "delete"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    }
    # No wildcard anywhere in any of our roles.
    for doc in docs:
        for rule in doc.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (doc["metadata"]["name"], rule)


def _verbs(*verbs: str, group: str, resource: str) -> set[tuple[str, str, str]]:
    return {(group, resource, v) for v in verbs}


EVENT_RULES = _verbs("create", "patch", group="", resource="events") | _verbs(
    "create", "patch", group="events.k8s.io", resource="events"
)


def test_checkpoint_controller_cluster_role_is_exactly_the_least_privilege(
    docs: list[dict[str, Any]],
) -> None:
    # The whole set: a role that gains clusterrolebindings, serviceaccounts, bind, escalate or
    # impersonate (or anything else) fails here.
    assert _rules(docs, "dynamo-checkpoint-controller") == (
        _verbs("list", "watch", "patch", group="nvidia.com", resource="dynamocheckpoints")
        | _verbs("patch", group="nvidia.com", resource="dynamocheckpoints/status")
        | _verbs("update", group="nvidia.com", resource="dynamocheckpoints/finalizers")
        | _verbs("get", "list", "watch", "create", "delete", group="batch", resource="jobs")
        | _verbs("list", "watch", group="", resource="pods")
        | _verbs(
            "get", "list", "watch", "create", "delete", group="nvidia.com", resource="podsnapshots"
        )
        | EVENT_RULES
    )


def test_podsnapshot_controller_cluster_role_is_exactly_the_least_privilege(
    docs: list[dict[str, Any]],
) -> None:
    assert _rules(docs, "dynamo-podsnapshot-controller") == (
        _verbs("get", "list", "watch", "patch", group="nvidia.com", resource="podsnapshots")
        | _verbs("patch", group="nvidia.com", resource="podsnapshots/status")
        | _verbs(
            "get",
            "list",
            "watch",
            "create",
            "delete",
            group="nvidia.com",
            resource="podsnapshotcontents",
        )
        | _verbs("get", group="", resource="pods")
        | EVENT_RULES
    )


def test_controllers_leader_election_roles_are_one_lease_resource(
    docs: list[dict[str, Any]],
) -> None:
    for name in ("dynamo-checkpoint-controller", "dynamo-podsnapshot-controller"):
        role = find(docs, "Role", f"{name}-leader-election")
        assert role["metadata"]["namespace"] == "dynamo-snapshot-system"
        rules = {
            (g, r, v)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }
        assert rules == _verbs(
            "get",
            "create",
            "update",
            "patch",
            "delete",
            group="coordination.k8s.io",
            resource="leases",
        )


def test_controllers_run_non_root_read_only_with_leader_election(
    docs: list[dict[str, Any]],
) -> None:
    for name in ("dynamo-checkpoint-controller", "dynamo-podsnapshot-controller"):
        pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["command"] == [name]
        assert "--leader-elect" in container["args"]
        assert f"--leader-election-id={name}.nvidia.com" in container["args"]
        binds = {
            a.split("=", 1)[0]: a.split("=", 1)[1].rsplit(":", 1)
            for a in container["args"]
            if a.startswith(("--metrics-bind-address=", "--health-probe-bind-address="))
        }
        # Every interface on a pod network; loopback only (own ports) on the host network.
        host = "127.0.0.1" if _host_network(docs) else ""
        assert binds["--metrics-bind-address"][0] == host
        assert binds["--health-probe-bind-address"][0] == host
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
            "metrics": int(binds["--metrics-bind-address"][1]),
            "health": int(binds["--health-probe-bind-address"][1]),
        }
        if host:
            assert container["readinessProbe"]["httpGet"]["host"] == host


def _host_network(docs: list[dict[str, Any]]) -> bool:
    """The local overlay: components on the host network (a loopback-only node)."""
    ds = find(docs, "DaemonSet", "dynamo-snapshot-agent")
    return bool(ds["spec"]["template"]["spec"].get("hostNetwork"))


def test_agent_daemonset_has_node_access_and_node_name(docs: list[dict[str, Any]]) -> None:
    pod = find(docs, "DaemonSet", "dynamo-snapshot-agent")["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod["serviceAccountName"] == "dynamo-snapshot-agent"
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    assert agent["command"] == ["dynamo-snapshot-agent"]
    assert agent["securityContext"]["privileged"] is True
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths["host-proc"] == "/proc"
    assert host_paths["cgroup"] == "/sys/fs/cgroup"
    assert host_paths["host-seccomp"] == "/var/lib/kubelet/seccomp"
    assert "checkpoints" in host_paths
    socket = env["DYNAMO_SNAPSHOT_RUNTIME_ENDPOINT"]["value"].removeprefix("unix://")
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    # The socket the agent dials lies inside the mounted runtime directory, which is the host's.
    assert socket.startswith(mounts["runtime-run"] + "/")
    assert mounts["runtime-run"] == host_paths["runtime-run"]
    (init,) = pod["initContainers"]
    assert "dynamo-snapshot/block-io-uring.json" in " ".join(init["command"])


def test_seccomp_profile_blocks_io_uring(docs: list[dict[str, Any]]) -> None:
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    profile = json.loads(cm["data"]["block-io-uring.json"])
    blocked = {
        n for s in profile["syscalls"] if s["action"] == "SCMP_ACT_ERRNO" for n in s["names"]
    }
    assert blocked == {"io_uring_setup", "io_uring_enter", "io_uring_register"}


def test_metrics_service_scrapes_every_binary(docs: list[dict[str, Any]]) -> None:
    if _host_network(docs):
        # Loopback pod addresses are refused by Endpoints: no Service; scrape annotations only.
        assert not [d for d in docs if d["kind"] == "Service"]
        for d in docs:
            if d["kind"] in ("Deployment", "DaemonSet"):
                annotations = d["spec"]["template"]["metadata"]["annotations"]
                assert annotations["prometheus.io/scrape"] == "true", d["metadata"]["name"]
        return
    svc = find(docs, "Service", "dynamo-snapshot-metrics")
    assert svc["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    selector = svc["spec"]["selector"]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert len(workloads) == 3
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]


def test_images_per_overlay() -> None:
    expected = {
        "default": ("ghcr.io/ai-dynamo/dynamo-snapshot:0.1.0", None),
        "overlays/kind": ("localhost/dynamo-snapshot/dynamo-snapshot:dev", "Never"),
        "overlays/local": ("localhost/dynamo-snapshot/dynamo-snapshot:dev", "Never"),
    }
    for overlay, (image, pull) in expected.items():
        docs = render(MANIFESTS / overlay)
        for d in docs:
            if d["kind"] not in ("Deployment", "DaemonSet"):
                continue
            pod = d["spec"]["template"]["spec"]
            for container in pod["containers"] + pod.get("initContainers", []):
                assert container["image"] == image, (overlay, d["metadata"]["name"])
                assert container.get("imagePullPolicy") == pull, (overlay, container["name"])


def test_servicemonitor_component_adds_a_monitor(tmp_path: Path) -> None:
    # An overlay of our own that opts in to the component, as a user would.
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize refuses absolute paths to other kustomizations.
                "resources": [os.path.relpath(MANIFESTS / "default", tmp_path)],
                "components": [
                    os.path.relpath(MANIFESTS / "components" / "servicemonitor", tmp_path)
                ],
            }
        )
    )
    docs = render(tmp_path)
    monitor = find(docs, "ServiceMonitor", "dynamo-snapshot")
    svc = find(docs, "Service", "dynamo-snapshot-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]


def test_containerfile_text_names_a_multistage_criu_image_and_the_three_scripts() -> None:
    """A text check of the Containerfile (nothing is built here): multi-stage, CRIU from trixie,
    non-root, and pyproject declares the three console scripts it installs."""
    text = (REPO / "Containerfile").read_text()
    assert "UNVERIFIED" in text
    assert text.count("FROM ") >= 2  # multi-stage
    assert "criu" in text
    assert "trixie" in text  # CRIU >= 4 comes from Debian 13
    assert "USER 65532" in text  # controllers run as non-root by default
    pyproject = (REPO / "pyproject.toml").read_text()
    for script in (
        "dynamo-checkpoint-controller",
        "dynamo-podsnapshot-controller",
        "dynamo-snapshot-agent",
    ):
        assert f"{script} =" in pyproject
