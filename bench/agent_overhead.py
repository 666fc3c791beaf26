"""The agent's own overhead for a small workload: content created → dump started (issue 11).

A throw-away control plane (hack/controlplane.py, in a temporary directory) and the node's
containerd (hack/node; set DYNAMO_SNAPSHOT_NODE_RUN to use a private one). The benchmark plays
the kubelet (tests/integration/agent/kubelet.py): for each of N captures it runs a fresh
workload pod (no touched memory), waits until its container is Ready in the Pod status, then
creates the PodSnapshotContent and notes when the agent's executor starts the dump. In between
lie the informer event, the gate (live pod read, eligibility label and its event), the capture
decision (CRI ContainerStatus), the Lease and the re-reads under it.

Goal: p50 ≤ 50 ms (an absolute goal: there is no other agent to compare with).
Usage: ``python -m bench agent-overhead [-- --captures N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# hack/ holds the local control plane (pytest puts it on the path; `python -m bench` does not).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack"))

from controlplane import ControlPlane
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from bench import results
from bench.agent_capture import _node
from dynamo_snapshot.agent.app import assemble
from dynamo_snapshot.agent.config import AgentConfig
from dynamo_snapshot.agent.cri.client import CriClient
from dynamo_snapshot.agent.executor import CaptureRequest, CaptureResult, Executor
from dynamo_snapshot.agent.paths import Destination
from dynamo_snapshot.agent.phases import Phases
from dynamo_snapshot.runtime import NAMESPACES, PODS, ManagerOptions, RestClient
from tests.integration.agent.conftest import create_content, terminal_condition
from tests.integration.agent.kubelet import NODE_NAME, ensure_node, played_pod
from tests.integration.api.crds_fixture import install_crds


class _Timed(Executor):
    """The agent's executor, noting when each dump starts (by pod name)."""

    starts: dict[str, float]

    async def capture(
        self, req: CaptureRequest, dest: Destination, phases: Phases
    ) -> CaptureResult:
        self.starts[req.pod_name] = time.monotonic()
        return await super().capture(req, dest, phases)


async def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def run(captures: int) -> list[float]:
    socket, criu = _node()
    with tempfile.TemporaryDirectory(prefix="agent-overhead-") as tmp:
        work = Path(tmp)
        cluster = ControlPlane(dir=work / "cluster")
        cluster.up()
        try:
            install_crds(cluster)
            cfg = k8s_client.Configuration()
            await k8s_config.load_kube_config(
                config_file=str(cluster.kubeconfig), client_configuration=cfg, persist_config=False
            )
            async with k8s_client.ApiClient(configuration=cfg) as api_client:
                return await _measure(api_client, socket, criu, work, captures)
        finally:
            cluster.down()


async def _measure(
    api_client: Any, socket: str, criu: Path, work: Path, captures: int
) -> list[float]:
    api = RestClient(api_client)
    await ensure_node(api)
    ns = "agent-overhead"
    await api.create(NAMESPACES, {"metadata": {"name": ns}})
    storage = work / "checkpoints"
    storage.mkdir(mode=0o700)
    cfg = AgentConfig(
        node_name=NODE_NAME,
        runtime_endpoint=socket,
        storage_root=str(storage),
        criu_path=str(criu),
        method="criu",
        fsync=False,
    )
    options = ManagerOptions(
        metrics_bind_address="0", health_probe_bind_address="0", handle_signals=False
    )
    out: list[float] = []
    async with (
        CriClient(socket, timeout=60) as cri,
        assemble(api_client, cfg, options) as (mgr, agent),
    ):
        timed = _Timed(agent.executor.cri, agent.executor.config)
        timed.starts = {}
        agent.executor = timed
        runner = asyncio.create_task(mgr.run())
        try:
            for i in range(captures):
                async with played_pod(
                    api, cri, ns, work / "pods", touch_mib=0, checkpoint_id=f"overhead-{i}"
                ) as pod:

                    async def ready(name: str = pod.name) -> bool:
                        obj = await api.get(PODS, name, ns)
                        statuses = obj.get("status", {}).get("containerStatuses") or []
                        return bool(statuses and statuses[0].get("ready"))

                    await _wait(ready, 60, f"pod {pod.name} Ready")
                    t0 = time.monotonic()
                    content = await create_content(api, ns, pod.name, pod_uid=pod.uid)
                    name = content["metadata"]["name"]

                    async def done(name: str = name) -> bool:
                        return await terminal_condition(api, name) is not None

                    await _wait(done, 60, f"{name} terminal")
                    out.append(timed.starts[pod.name] - t0)
                    print(f"capture {i}: {out[-1] * 1000:.1f} ms", flush=True)
        finally:
            mgr.stop()
            await runner
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench agent-overhead")
    parser.add_argument("--captures", type=int, default=50)
    args = parser.parse_args(argv)
    values = asyncio.run(run(args.captures))
    results.write(
        "agent-overhead-content-to-dump-start",
        what=f"agent overhead, content created -> dump started, small workload, "
        f"{len(values)} captures (p50 = median; p99 in inputs)",
        unit="s",
        ours=values,
        baseline_name=None,
        baseline=None,
        better="lower",
        goal=None,
        why="absolute goal p50 <= 0.050 s: no other agent to compare against here",
        inputs={
            "p50_s": statistics.median(values),
            "p99_s": _p(values, 0.99),
            "goal_p50_s": 0.050,
            "captures": len(values),
        },
    )
    return 0
