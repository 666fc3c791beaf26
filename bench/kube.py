"""Cluster plumbing for the benchmarks: connecting, the BenchObject CRD, the objects themselves.

The benchmarks define their own custom resource, ``benchobjects.bench.dynamo.test`` (namespaced,
kind ``BenchObject``), so that they depend on nothing else in the project's API. Its spec carries
``stamp`` (wall-clock seconds, written by the load generator at update time), ``seq`` and a
``payload`` string.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.errors import AlreadyExists, NotFound
from dynamo_snapshot.runtime.resource import Resource

REPO = Path(__file__).resolve().parent.parent

BENCHOBJECTS = Resource("bench.dynamo.test", "v1", "benchobjects", "BenchObject")
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "", namespaced=False)
NAMESPACES_R = Resource("", "v1", "namespaces", "Namespace", namespaced=False)

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "benchobjects.bench.dynamo.test"},
    "spec": {
        "group": "bench.dynamo.test",
        "scope": "Namespaced",
        "names": {
            "plural": "benchobjects",
            "singular": "benchobject",
            "kind": "BenchObject",
            "listKind": "BenchObjectList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "stamp": {"type": "number"},
                                    "seq": {"type": "integer"},
                                    "payload": {"type": "string"},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def find_kubeconfig(explicit: str | None) -> Path:
    """--kubeconfig, else $KUBECONFIG, else the cluster of `./hack/just up` (.run/cluster)."""
    if explicit:
        return Path(explicit)
    if os.environ.get("KUBECONFIG"):
        return Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
    out = subprocess.run(
        [sys.executable, str(REPO / "hack" / "controlplane.py"), "kubeconfig"],
        capture_output=True,
        text=True,
        check=False,
    )
    path = Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None
    if path is None or not path.exists():
        raise SystemExit("no cluster: run `./hack/just up` first, or set KUBECONFIG / --kubeconfig")
    return path


@asynccontextmanager
async def connect(kubeconfig: Path, pool: int = 256) -> AsyncIterator[Client]:
    cfg = k8s_client.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
    )
    cfg.connection_pool_maxsize = pool
    api = k8s_client.ApiClient(configuration=cfg)
    try:
        yield Client(api, user_agent="dynamo-snapshot-bench")
    finally:
        await api.close()


async def ensure_namespace(c: Client, name: str, timeout: float = 600.0) -> None:
    """Create the namespace, waiting first for an earlier run's deletion of it to finish."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    with anyio.fail_after(timeout):
        while True:
            try:
                await c.create(NAMESPACES_R, body)
                return
            except AlreadyExists:
                try:
                    ns = await c.get(NAMESPACES_R, name)
                except NotFound:
                    continue
                if ns.get("status", {}).get("phase") != "Terminating":
                    return
            await anyio.sleep(1.0)


async def delete_namespace(c: Client, name: str) -> None:
    """Delete a namespace the benchmark made (the namespace controller removes its objects)."""
    with contextlib.suppress(NotFound):
        await c.delete(NAMESPACES_R, name)


async def ensure_crd(c: Client, timeout: float = 60.0) -> None:
    """Create the BenchObject CRD (if missing) and wait until it is Established and served."""
    with contextlib.suppress(AlreadyExists):
        await c.create(CRDS, CRD)
    with anyio.fail_after(timeout):
        while True:
            crd = await c.get(CRDS, CRD["metadata"]["name"])
            conds = crd.get("status", {}).get("conditions", [])
            if any(x["type"] == "Established" and x["status"] == "True" for x in conds):
                try:
                    await c.list(BENCHOBJECTS, "bench-probe", limit=1)
                    return
                except NotFound:
                    pass
            await anyio.sleep(0.2)


def object_name(i: int) -> str:
    return f"obj-{i:05d}"


async def list_names(c: Client, resource: Resource, namespace: str) -> set[str]:
    names: set[str] = set()
    cont: str | None = None
    while True:
        page = await c.list(resource, namespace, limit=1000, continue_=cont)
        names.update(o["metadata"]["name"] for o in page.get("items", []))
        cont = page.get("metadata", {}).get("continue")
        if not cont:
            return names


async def create_all(
    c: Client,
    resource: Resource,
    namespace: str,
    objects: Iterable[dict[str, Any]],
    concurrency: int = 32,
) -> int:
    """Create the objects that do not exist yet (by name); returns how many were created."""
    existing = await list_names(c, resource, namespace)
    todo = [o for o in objects if o["metadata"]["name"] not in existing]
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(obj: dict[str, Any]) -> None:
        async with limiter:
            with contextlib.suppress(AlreadyExists):
                await c.create(resource, obj, namespace)

    async with anyio.create_task_group() as tg:
        for obj in todo:
            tg.start_soon(one, obj)
    return len(todo)


def bench_object(i: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "bench.dynamo.test/v1",
        "kind": "BenchObject",
        "metadata": {"name": object_name(i), "namespace": namespace},
        "spec": {"stamp": 0.0, "seq": 0, "payload": "x" * 64},
    }
