"""Scale of the two controllers: N DynamoCheckpoints driven from creation to Ready.

Each run gets a fresh local control plane (hack/controlplane.py: etcd, apiserver, the real
controller-manager with its Job controller, scheduler), so runs do not inherit each other's objects.
The controllers run as one process (both wired into one manager, as `build()` wires them) whose
peak RSS and `rest_client_requests_total` are read at the end. A node stand-in in the driver plays
the kubelet (binds each Job pod, reports it Running, then Succeeded once its PodSnapshot is Ready)
and the agent (writes `Ready` on each content at once), so the figures are the controllers' own.

Contenders, alternated run by run on the same N:
- **ours**: reconcilers read from the shared informer cache (as shipped);
- **baseline**: the same process with every reconciler read sent to the API server instead (the
  informers still run: they are what triggers the reconciles).

Reported per N: checkpoints/s (creation of the first to Ready of the last), p50 and p99 of
create→Ready, API writes per checkpoint, API reads per checkpoint, the controllers' peak RSS.

    .venv/bin/python -m bench.controllers_scale --sizes 100 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import anyio

from bench import results

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))

NS = "scale"
NODE = "scale-node"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


# --- the controllers' process ------------------------------------------------------------------


class LiveReads:
    """The baseline: the manager's client with every read sent to the API server."""

    def __init__(self, mgr: Any) -> None:
        self._mgr = mgr
        self.reader = mgr.api_reader
        self.live = mgr.live
        self.cache = mgr.cache
        for verb in ("create", "update", "update_status", "patch_merge", "patch_status", "delete"):
            setattr(self, verb, getattr(mgr.live, verb))
        self.patch_json = mgr.live.patch_json

    async def get(
        self, resource: Any, name: str, namespace: Any = None, *, view: Any = None
    ) -> Any:
        return await self.reader.get(resource, name, namespace)

    async def list(
        self,
        resource: Any,
        namespace: Any = None,
        *,
        labels: Any = None,
        fields: Any = None,
        index: Any = None,
        view: Any = None,
    ) -> Any:
        if view is not None:  # the view's selectors are part of the question
            labels = labels or view.labels
            fields = fields or view.fields
        return await self.reader.list(
            resource, namespace, labels=labels, fields=fields, index=index
        )


async def serve(mode: str, kubeconfig: str, port: int) -> None:
    from dynamo_snapshot.cmd import checkpoint_controller, podsnapshot_controller
    from dynamo_snapshot.cmd.common import CommonOptions, load_api_client, manager_options
    from dynamo_snapshot.runtime import Manager

    api = await load_api_client(kubeconfig)
    opts = CommonOptions(
        kubeconfig=kubeconfig,
        metrics_bind_address=f"127.0.0.1:{port}",
        health_probe_bind_address="0",
        log_level="warning",
        log_format="text",
        namespaces=(NS,),
    )
    mgr = Manager(api, manager_options(opts, "scale"), field_manager="scale")
    if mode == "baseline":
        mgr.client = LiveReads(mgr)  # type: ignore[assignment]
    checkpoint_controller.build(mgr, opts, argparse.Namespace(workers=4, job_seccomp_profile=""))
    podsnapshot_controller.build(
        mgr, opts, argparse.Namespace(workers=4, orphan_grace_period=300.0)
    )
    try:
        await mgr.run()
    finally:
        await api.close()


# --- the driver --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("rest_client_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            method = labels.split('method="', 1)[1].split('"', 1)[0]
            out[method] = out.get(method, 0.0) + float(value)
    return out


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _checkpoint(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoCheckpoint",
        "metadata": {"name": f"ck-{i:05d}"},
        "spec": {
            "identity": {"model": f"scale/model-{i}", "backendFramework": "vllm"},
            "job": {
                "podTemplateSpec": {
                    "spec": {"containers": [{"name": "main", "image": "workload:dev"}]}
                }
            },
        },
    }


async def _node_stand_in(api: Any, ready: dict[str, float]) -> Any:
    """A manager that plays the kubelet and the agent, and records when checkpoints turn Ready."""
    from dynamo_snapshot.api.resources import (
        DYNAMO_CHECKPOINTS,
        POD_SNAPSHOT_CONTENTS,
        POD_SNAPSHOTS,
    )
    from dynamo_snapshot.runtime import (
        PODS,
        ControllerBuilder,
        Manager,
        ManagerOptions,
        NotFound,
        Request,
        View,
        meta,
    )
    from dynamo_snapshot.runtime.informer import FuncHandler

    mgr = Manager(
        api,
        ManagerOptions(
            metrics_bind_address="0",
            health_probe_bind_address="0",
            namespace=NS,
            handle_signals=False,
        ),
    )
    live = mgr.live
    source = "nvidia.com/snapshot-is-checkpoint-source=true"

    def now() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    async def pods(req: Request) -> None:
        try:
            pod = await mgr.client.get(PODS, req.name, req.namespace, view=View(NS, source))
        except NotFound:
            return
        if pod.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed"):
            return
        if not pod["spec"].get("nodeName"):
            with contextlib.suppress(Exception):
                await live._request(
                    "POST",
                    PODS.path(NS, req.name, "binding"),
                    body={
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": req.name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
                    },
                )
        await live.patch_status(PODS, req.name, {"status": _running(pod, now())}, NS)

    async def contents(req: Request) -> None:
        try:
            content = await mgr.client.get(POD_SNAPSHOT_CONTENTS, req.name)
        except NotFound:
            return
        if content.get("status", {}).get("conditions"):
            return
        cond = {
            "type": "Ready",
            "status": "True",
            "reason": "Captured",
            "message": "stand-in",
            "lastTransitionTime": now(),
        }
        await live.patch_status(POD_SNAPSHOT_CONTENTS, req.name, {"status": {"conditions": [cond]}})

    async def snapshots(req: Request) -> None:
        try:
            snap = await mgr.client.get(POD_SNAPSHOTS, req.name, req.namespace)
        except NotFound:
            return
        conds = {c["type"]: c["status"] for c in snap.get("status", {}).get("conditions", [])}
        if conds.get("Ready") != "True":
            return
        pod = snap["spec"]["source"]["podRef"]["name"]
        try:
            current = await mgr.client.get(PODS, pod, NS, view=View(NS, source))
        except NotFound:
            return
        if current.get("status", {}).get("phase") == "Succeeded":
            return
        await live.patch_status(PODS, pod, {"status": _succeeded(current, now())}, NS)

    ControllerBuilder(mgr).named("kubelet").for_(PODS, label_selector=source).with_workers(
        8
    ).without_leader_election().complete(pods)
    ControllerBuilder(mgr).named("agent").for_(POD_SNAPSHOT_CONTENTS).with_workers(
        8
    ).without_leader_election().complete(contents)
    ControllerBuilder(mgr).named("finisher").for_(POD_SNAPSHOTS).with_workers(
        8
    ).without_leader_election().complete(snapshots)

    def seen(obj: Any) -> None:
        if obj.get("status", {}).get("phase") == "Ready":
            name = meta(obj)["name"]
            ready.setdefault(name, time.monotonic())

    informer = mgr.cache.informer_for(DYNAMO_CHECKPOINTS, NS)
    informer.add_event_handler(FuncHandler(on_add=seen, on_update=lambda old, new: seen(new)))
    return mgr


def _running(pod: dict[str, Any], at: str) -> dict[str, Any]:
    return {
        "phase": "Running",
        "startTime": at,
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": c["name"],
                "ready": True,
                "restartCount": 0,
                "image": c.get("image", ""),
                "imageID": "",
                "state": {"running": {"startedAt": at}},
            }
            for c in pod["spec"]["containers"]
        ],
    }


def _succeeded(pod: dict[str, Any], at: str) -> dict[str, Any]:
    return {
        "phase": "Succeeded",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
        "containerStatuses": [
            {
                "name": c["name"],
                "ready": False,
                "restartCount": 0,
                "image": c.get("image", ""),
                "imageID": "",
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": at,
                        "finishedAt": at,
                    }
                },
            }
            for c in pod["spec"]["containers"]
        ],
    }


def _spawn(mode: str, kubeconfig: Path, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "bench.controllers_scale", "--serve", mode]
    args += ["--kubeconfig", str(kubeconfig), "--port", str(port)]
    return subprocess.Popen(args, cwd=REPO)


async def one_run(mode: str, n: int, timeout: float) -> dict[str, Any]:
    from controlplane import ControlPlane  # type: ignore[import-not-found,unused-ignore]

    from bench.kube import connect, ensure_namespace
    from dynamo_snapshot.runtime import NODES, SERVICEACCOUNTS, NotFound

    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        cp = ControlPlane(dir=Path(tmp))
        await anyio.to_thread.run_sync(cp.up)
        try:
            cp.kubectl("apply", "--server-side", "-k", str(REPO / "manifests" / "crds"))
            cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
            async with connect(cp.kubeconfig) as client:
                await ensure_namespace(client, NS)
                await client.create(NODES, {"metadata": {"name": NODE}})
                with anyio.fail_after(120):
                    while True:
                        try:
                            await client.get(SERVICEACCOUNTS, "default", NS)
                            break
                        except NotFound:
                            await anyio.sleep(0.2)
                port = _free_port()
                proc = _spawn(mode, cp.kubeconfig, port)
                try:
                    return await _drive(client.api_client, client, proc, port, n, timeout)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        finally:
            await anyio.to_thread.run_sync(cp.down)


async def _drive(
    api: Any, client: Any, proc: subprocess.Popen[bytes], port: int, n: int, timeout: float
) -> dict[str, Any]:
    from dynamo_snapshot.api.resources import DYNAMO_CHECKPOINTS

    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    stand_in = await _node_stand_in(api, ready)
    async with anyio.create_task_group() as tg:
        tg.start_soon(stand_in.run)
        with anyio.fail_after(120):
            while True:  # the controllers' process serves metrics once it runs
                try:
                    _metrics(port)
                    break
                except OSError:
                    await anyio.sleep(0.2)
            await stand_in.cache.wait_for_sync(60)
        before = _metrics(port)
        limiter = anyio.CapacityLimiter(16)

        async def create(i: int) -> None:
            async with limiter:
                body = _checkpoint(i)
                created[body["metadata"]["name"]] = time.monotonic()
                await client.create(DYNAMO_CHECKPOINTS, body, NS)

        t0 = time.monotonic()
        async with anyio.create_task_group() as creators:
            for i in range(n):
                creators.start_soon(create, i)
        with anyio.move_on_after(timeout) as deadline:
            while len(ready) < n:
                if proc.poll() is not None:
                    raise RuntimeError("the controllers' process exited")
                await anyio.sleep(0.1)
        if deadline.cancelled_caught:
            stand_in.stop()
            return {"timed_out": timeout, "ready": len(ready), "rss_mib": _peak_rss_mib(proc.pid)}
        t1 = max(ready.values())
        after = _metrics(port)
        stand_in.stop()
    latencies = sorted(ready[k] - created[k] for k in ready)
    writes = sum(after.get(m, 0) - before.get(m, 0) for m in WRITES)
    reads = after.get("GET", 0) - before.get("GET", 0)
    return {
        "rate": n / (t1 - t0),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "writes_per_checkpoint": writes / n,
        "reads_per_checkpoint": reads / n,
        "rss_mib": _peak_rss_mib(proc.pid),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.controllers_scale", description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--serve", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        anyio.run(serve, args.serve, args.kubeconfig, args.port)
        return 0
    details: dict[str, Any] = {}
    for n in args.sizes:
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
        for r in range(args.rounds):
            order = ["ours", "baseline"] if r % 2 == 0 else ["baseline", "ours"]
            for mode in order:
                print(f"controllers_scale: N={n} round {r + 1} {mode}", file=sys.stderr, flush=True)
                out = anyio.run(one_run, mode, n, args.timeout)
                print(f"  {json.dumps(out)}", file=sys.stderr, flush=True)
                runs[mode].append(out)
        details[str(n)] = runs
        _write(n, runs)
        results.write_raw(f"controllers-scale-details-{n}", runs)
    return 0


def _write(n: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    base = "the same controllers with every reconciler read sent to the API server (live reads)"
    why = None
    late = [r for r in runs["baseline"] if "timed_out" in r]
    if late:
        why = (
            f"the live-read baseline did not drive {n} checkpoints to Ready within "
            f"{late[0]['timed_out']:g} s ({late[0]['ready']} of {n} Ready): every reconcile "
            "lists what the cache would have answered (all DynamoCheckpoints of the namespace "
            "for the duplicate-ID check, the Job's pods, the owned PodSnapshots), so its cost "
            "grows with N"
        )
    if any("timed_out" in r for r in runs["ours"]):
        raise RuntimeError(f"ours did not finish N={n}: {runs['ours']}")
    inputs = {"checkpoints": n, "workers": 4, "node": "kubelet and agent stand-ins in the driver"}
    rows = [
        ("throughput", "rate", "checkpoints/s", "higher",
         "checkpoints driven from creation to Ready per second (first create to last Ready)"),
        ("latency-p50", "p50", "s", "lower", "time from create to Ready, p50"),
        ("latency-p99", "p99", "s", "lower", "time from create to Ready, p99"),
        ("writes", "writes_per_checkpoint", "writes/checkpoint", "lower",
         "API writes (POST/PUT/PATCH/DELETE, Events included) per checkpoint, both controllers"),
        ("reads", "reads_per_checkpoint", "reads/checkpoint", "lower",
         "API reads (GET) per checkpoint, both controllers (list/watch of the informers included)"),
        ("rss", "rss_mib", "MiB", "lower", "peak RSS of the controllers' process (both of them)"),
    ]  # fmt: skip
    for suffix, key, unit, better, what in rows:
        results.write(
            f"controllers-scale-{suffix}-{n}",
            what=f"{what}, {n} DynamoCheckpoints",
            unit=unit,
            ours=[r[key] for r in runs["ours"]],
            baseline_name=None if why else base,
            baseline=None if why else [r[key] for r in runs["baseline"]],
            better=better,
            goal=None,
            why=why,
            inputs=inputs,
        )


if __name__ == "__main__":
    sys.exit(main())
