"""Benchmark 2: informer memory per cached Pod, on the real apiserver.

Creates N Pods of about 4 KB each (bench/pods.py, minus the fields the server owns; a scheduler
name nothing serves keeps the scheduler off them) in a namespace of their own, then, in a fresh
subprocess per measurement, starts dynamo_snapshot.runtime's SharedInformer on them, waits for
sync, and reports the RSS growth (after gc) divided by the number of cached Pods, next to the mean
compact JSON size of the cached Pods (what the informer holds, after dropping managedFields).

The store's representations ("bytes", the default, and "dict") are measured alternately in the
same run. The goal (issue 4) is at most 2x the JSON size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from bench import kube, results
from bench.pods import synthetic_pod


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def pod_to_create(i: int, namespace: str) -> dict[str, Any]:
    pod = synthetic_pod(i, namespace)
    meta = pod["metadata"]
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences"):
        meta.pop(k, None)
    del meta["generateName"]
    meta["name"] = f"pod-{i:06d}"
    spec = pod["spec"]
    spec.pop("nodeName", None)
    spec["schedulerName"] = "bench-no-scheduler"
    # The service-account admission plugin mounts its own token volume.
    spec["volumes"] = [v for v in spec["volumes"] if not v["name"].startswith("kube-api-access")]
    for c in spec["containers"]:
        c["volumeMounts"] = [m for m in c["volumeMounts"] if not m["name"].startswith("kube-api")]
        # Pods here never run, so they have no status: make up its ~1.3 KB in env instead, to
        # keep the cached Pod at about 4 KB.
        c["env"] += [
            {"name": f"FEATURE_FLAG_{k}", "value": f"{c['name']}-{i}-{k}-" + "v" * 48}
            for k in range(6)
        ]
    del pod["status"]
    return pod


async def measure(kubeconfig: Path, namespace: str, representation: str) -> dict[str, Any]:
    from dynamo_snapshot.runtime.informer import SharedInformer
    from dynamo_snapshot.runtime.resource import PODS

    async with kube.connect(kubeconfig) as c:
        await c.list(PODS, namespace, limit=1)  # warm the connection and lazy imports
        gc.collect()
        rss0 = _rss()
        t0 = time.perf_counter()
        informer = SharedInformer(c, PODS, namespace=namespace, representation=representation)  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            tg.start_soon(informer.run)
            synced = await informer.wait_for_sync(900)
            tg.cancel_scope.cancel()
        sync_s = time.perf_counter() - t0
        gc.collect()
        grown = _rss() - rss0
        n = len(informer.store)
        sizes = [len(orjson.dumps(o)) for o in informer.store.list()]
    return {
        "synced": synced,
        "objects": n,
        "rss_per_object": grown / n if n else 0.0,
        "json_size": sum(sizes) / len(sizes) if sizes else 0.0,
        "sync_s": sync_s,
    }


async def prepare(kubeconfig: Path, namespace: str, n: int) -> None:
    from dynamo_snapshot.runtime.resource import PODS

    async with kube.connect(kubeconfig) as c:
        await kube.ensure_namespace(c, namespace)
        t = time.monotonic()
        # Pods need the namespace's default ServiceAccount (made by the controller-manager).
        made = 0
        for attempt in range(60):
            try:
                made = await kube.create_all(
                    c, PODS, namespace, (pod_to_create(i, namespace) for i in range(n)), 16
                )
                break
            except Exception as e:
                if attempt == 59:
                    raise
                print(f"  waiting to create pods: {e!r}", file=sys.stderr)
                await anyio.sleep(1)
        print(f"{made} Pods created in {time.monotonic() - t:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--kubeconfig")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="keep the Pods' namespaces afterwards")
    p.add_argument("--worker", choices=["bytes", "dict"], help=argparse.SUPPRESS)
    p.add_argument("--namespace", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    kubeconfig = kube.find_kubeconfig(args.kubeconfig)
    if args.worker:
        print(json.dumps(asyncio.run(measure(kubeconfig, args.namespace, args.worker))))
        return 0
    details: dict[str, Any] = {}
    for n in args.sizes:
        ns = f"bench-pods-{n}"
        asyncio.run(prepare(kubeconfig, ns, n))
        runs: dict[str, list[dict[str, Any]]] = {"bytes": [], "dict": []}
        for r in range(args.rounds):
            for rep in ["bytes", "dict"] if r % 2 == 0 else ["dict", "bytes"]:
                cmd = [sys.executable, "-m", "bench.informer_memory", "--worker", rep]
                cmd += ["--namespace", ns, "--kubeconfig", str(kubeconfig)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1200)
                res = json.loads(out.stdout)
                runs[rep].append(res)
                print(f"n={n} round={r} {rep}: {res}", file=sys.stderr)
        details[str(n)] = runs
        json_sizes = [x["json_size"] for x in runs["bytes"]]
        inputs = {
            "pods": n,
            "cached_objects": runs["bytes"][0]["objects"],
            "mean_cached_json_bytes": json_sizes[0],
            "rounds": args.rounds,
        }
        results.write(
            f"informer-memory-per-pod-{n}",
            what=f"informer RSS per cached Pod ({n} Pods of ~{json_sizes[0] / 1024:.1f} KB JSON, "
            "store representation 'bytes') against the Pod's compact JSON size",
            unit="bytes",
            ours=[x["rss_per_object"] for x in runs["bytes"]],
            baseline_name="compact JSON size of the cached Pod (managedFields dropped)",
            baseline=json_sizes,
            better="lower",
            goal=2.0,
            inputs=inputs,
        )
        results.write(
            f"informer-memory-bytes-vs-dict-{n}",
            what=f"informer RSS per cached Pod, {n} Pods: store representation 'bytes' vs 'dict'",
            unit="bytes",
            ours=[x["rss_per_object"] for x in runs["bytes"]],
            baseline_name="the same informer with representation='dict' (decoded dicts)",
            baseline=[x["rss_per_object"] for x in runs["dict"]],
            better="lower",
            goal=None,
            inputs=inputs,
        )
    results.write_raw("informer-memory-details", {"sizes": details, "date": results.today()})
    if not args.keep:
        asyncio.run(cleanup(kubeconfig, [f"bench-pods-{n}" for n in args.sizes]))
    return 0


async def cleanup(kubeconfig: Path, namespaces: list[str]) -> None:
    async with kube.connect(kubeconfig) as c:
        for ns in namespaces:
            await kube.delete_namespace(c, ns)


if __name__ == "__main__":
    raise SystemExit(main())
