"""The agent against the kubelet's own checkpoint API on the same pod (issue 11).

A throw-away control plane and a real kubelet node (hack/controlplane.py, hack/kubenode.py) run
the workload pod (1 GiB touched by default). Each round, alternated: the kubelet's
``POST /checkpoint/<ns>/<pod>/<container>`` (what a user gets without this project: a CRI
archive, no digests), the agent's executor with method=cri and with method=criu on the same
container through the kubelet's containerd (digests, manifest, verification, rename included).

Usage: ``python -m bench agent-kubelet [-- --runs N --mib M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# hack/ holds the local control plane and node (pytest puts it on the path; `python -m` does not).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack"))

from controlplane import ControlPlane
from kubenode import KubeNode

from bench import results
from bench.agent_capture import _node
from dynamo_snapshot.agent.container import resolve, strip_runtime_prefix
from dynamo_snapshot.agent.cri.client import CriClient
from dynamo_snapshot.agent.cri.podconfig import WORKLOAD_IMAGE
from dynamo_snapshot.agent.executor import CaptureRequest, Executor, ExecutorConfig, Method
from dynamo_snapshot.agent.paths import resolve_destination
from dynamo_snapshot.agent.phases import Phases

NS = "default"
POD = "bench-kubelet"


def _pod(node: str, mib: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NS},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "main",
                    "image": WORKLOAD_IMAGE,
                    "imagePullPolicy": "Never",
                    "env": [
                        {"name": "WORKLOAD_TOUCH_MIB", "value": str(mib)},
                        {"name": "WORKLOAD_TICK_SECONDS", "value": "0.2"},
                    ],
                    "volumeMounts": [{"name": "control", "mountPath": "/snapshot-control"}],
                }
            ],
            "volumes": [{"name": "control", "emptyDir": {}}],
        },
    }


def _get_pod(cluster: ControlPlane) -> dict[str, Any]:
    out = cluster.kubectl("get", "pod", "-n", NS, POD, "-o", "json")
    data: dict[str, Any] = json.loads(out.stdout)
    return data


async def run(runs: int, mib: int) -> dict[str, list[float]]:
    _socket, criu = _node()  # the CRIU wrapper (the kubelet's containerd uses the same)
    with tempfile.TemporaryDirectory(prefix="akb-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        cluster = ControlPlane(dir=work / "c")
        cluster.up()
        node = KubeNode.of(cluster)
        try:
            node.up()
            cluster.kubectl("apply", "-f", "-", input=json.dumps(_pod(node.name, mib)))
            deadline = time.monotonic() + 300
            while True:
                pod = _get_pod(cluster)
                statuses = pod.get("status", {}).get("containerStatuses") or []
                if statuses and statuses[0].get("state", {}).get("running"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("bench pod never ran")
                await asyncio.sleep(0.5)
            await asyncio.sleep(mib / 1024 * 3 + 2)  # the workload touches its memory first
            cid = strip_runtime_prefix(statuses[0]["containerID"])
            return await _measure(node, cid, pod, criu, work, runs)
        finally:
            node.down()
            cluster.down()


async def _measure(
    node: KubeNode, cid: str, pod: dict[str, Any], criu: Path, work: Path, runs: int
) -> dict[str, list[float]]:
    storage = work / "ckpt"
    storage.mkdir(mode=0o700)
    out: dict[str, list[float]] = {"kubelet": [], "cri": [], "criu": []}
    async with CriClient(str(node.cri_socket), timeout=60) as cri:
        facts = await resolve(cri, cid)
        meta = pod["metadata"]
        req = CaptureRequest(NS, POD, meta["uid"], node.name, facts)

        async def agent(method: Method) -> float:
            ex = Executor(
                cri,
                ExecutorConfig(
                    storage_root=storage, method=method, criu_path=str(criu), fsync=False
                ),
            )
            dest = resolve_destination(storage, None, f"k-{uuid.uuid4().hex[:8]}", "1")
            t0 = time.monotonic()
            await ex.capture(req, dest, Phases())
            took = time.monotonic() - t0
            shutil.rmtree(dest.base / dest.checkpoint_id)
            return took

        def kubelet() -> float:
            t0 = time.monotonic()
            archive = node.checkpoint(NS, POD, "main")
            took = time.monotonic() - t0
            os.unlink(archive)
            return took

        order = ["kubelet", "cri", "criu"]
        for i in range(runs):
            for name in order if i % 2 == 0 else list(reversed(order)):
                if name == "kubelet":
                    out[name].append(await asyncio.to_thread(kubelet))
                else:
                    out[name].append(await agent(name))  # type: ignore[arg-type]
                print(name, round(out[name][-1], 3), flush=True)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench agent-kubelet")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args(argv)
    m = asyncio.run(run(args.runs, args.mib))
    inputs = {"touched_mib": args.mib, "fsync": False, "node": "kubelet v1.34.4, containerd 2.1.9"}
    for method in ("cri", "criu"):
        results.write(
            f"agent-{method}-capture-vs-kubelet-checkpoint-api-{args.mib}m",
            what=f"whole capture by the agent (method={method}, digests and manifest included) "
            f"vs the kubelet's checkpoint API on the same pod, {args.mib} MiB touched",
            unit="s",
            ours=m[method],
            baseline_name="kubelet POST /checkpoint (KEP-2008), admin certificate",
            baseline=m["kubelet"],
            better="lower",
            goal=None,
            inputs=inputs,
        )
    return 0
