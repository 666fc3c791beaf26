"""Reading the components' /metrics on the port the pod names `metrics`: through the apiserver's
pod proxy (`/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/metrics`) as any client of a cluster
can, or, on the local cluster, directly: its pods use the host network of a node whose address is
loopback (127.0.0.N), which the apiserver refuses to proxy to ("address not allowed"), and which
this machine reaches without leaving it."""

from __future__ import annotations

import ipaddress
import json
import math
import urllib.request
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from e2e.deploy import SYSTEM_NAMESPACE

Obj = dict[str, Any]


class KubectlLike(Protocol):
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str: ...


def component_pods(cluster: KubectlLike, name: str | None = None) -> list[Obj]:
    selector = "app.kubernetes.io/part-of=dynamo-snapshot"
    if name:
        selector = f"app.kubernetes.io/name={name}"
    out = cluster.kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-l", selector, "-o", "json")
    return list(json.loads(out)["items"])


def scrape(cluster: KubectlLike, pod: Obj) -> str:
    port = next(
        p["containerPort"]
        for p in pod["spec"]["containers"][0]["ports"]
        if p.get("name") == "metrics"
    )
    name = pod["metadata"]["name"]
    ip = ipaddress.ip_address(pod["status"]["podIP"])
    if ip.is_loopback:
        with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())
    return cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/pods/{name}:{port}/proxy/metrics"
    )


def sample_value(text: str, name: str, **labels: str) -> float:
    """The sum of every sample called ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            wanted = s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            if wanted and not math.isnan(s.value):
                total += s.value
    return total
