"""Benchmark 3: work queue add/get/done throughput, ours vs client-go's workqueue.

Both sides run the same two phases on the same keys ("bench/object-N" strings), in separate
processes, alternated over rounds:

* sequential: add N distinct keys, then get + forget + done each, in one task / goroutine;
* concurrent: one producer adds each of the N keys twice (the second add is deduplicated, or marks
  a key being processed dirty so it is handed out again), while W workers get + forget + done until
  the queue is shut down and drained.

Ours is dynamo_snapshot.runtime.workqueue.WorkQueue with its default controller rate limiter, on
asyncio and on uvloop (the event-loop comparison); client-go's is
workqueue.NewTypedRateLimitingQueueWithConfig with DefaultTypedControllerRateLimiter, run with
GOMAXPROCS=1 (one thread, like one Python event loop) by hack/bench-go/wqbench.

An "op" is one item's add/get/done cycle; results are ops/s.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import results

CACHE = Path(os.environ.get("DYNAMO_SNAPSHOT_CACHE", Path.home() / ".cache" / "dynamo-snapshot"))
GO_BIN = CACHE / "bench-go" / "wqbench"


async def _sequential(keys: list[str]) -> float:
    from dynamo_snapshot.runtime.workqueue import WorkQueue

    q: WorkQueue[str] = WorkQueue("bench")
    t0 = time.perf_counter()
    for k in keys:
        q.add(k)
    for _ in keys:
        item = await q.get()
        q.forget(item)
        q.done(item)
    elapsed = time.perf_counter() - t0
    q.shut_down()
    return len(keys) / elapsed


async def _concurrent(keys: list[str], workers: int) -> float:
    from dynamo_snapshot.runtime.workqueue import QueueShutDown, WorkQueue

    q: WorkQueue[str] = WorkQueue("bench")
    handled = 0

    async def worker() -> None:
        nonlocal handled
        n = 0
        while True:
            try:
                item = await q.get()
            except QueueShutDown:
                break
            q.forget(item)
            q.done(item)
            n += 1
            if n % 64 == 0:
                await asyncio.sleep(0)  # a real reconcile awaits; let the others run
        handled += n

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for i, k in enumerate(keys):
        q.add(k)
        q.add(k)
        if i % 1000 == 999:
            await asyncio.sleep(0)
    await q.shut_down_with_drain()
    await asyncio.gather(*tasks)
    return handled / (time.perf_counter() - t0)


def python_worker(items: int, workers: int, loop: str) -> dict[str, Any]:
    keys = [f"bench/object-{i}" for i in range(items)]

    async def both() -> dict[str, Any]:
        return {
            "sequential": await _sequential(keys),
            "concurrent": await _concurrent(keys, workers),
        }

    if loop == "uvloop":
        import uvloop

        return uvloop.run(both())
    return asyncio.run(both())


def _run_python(items: int, workers: int, loop: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.workqueue", "--worker", loop]
    cmd += ["--items", str(items), "--workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    res: dict[str, Any] = json.loads(out.stdout)
    return res


def _run_go(items: int, workers: int) -> dict[str, Any]:
    env = {**os.environ, "GOMAXPROCS": "1"}
    cmd = [str(GO_BIN), "-items", str(items), "-workers", str(workers)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600, env=env)
    res: dict[str, Any] = json.loads(out.stdout)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--worker", choices=["asyncio", "uvloop"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(python_worker(args.items, args.workers, args.worker)))
        return 0

    have_go = GO_BIN.exists()
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    runs: dict[str, list[dict[str, Any]]] = {"asyncio": [], "uvloop": [], "client-go": []}
    for r in range(args.rounds):
        order = ["asyncio", "uvloop", "client-go"] if have_uvloop else ["asyncio", "client-go"]
        order = order[r % len(order) :] + order[: r % len(order)]
        for who in order:
            if who == "client-go":
                if have_go:
                    runs[who].append(_run_go(args.items, args.workers))
            else:
                runs[who].append(_run_python(args.items, args.workers, who))
        print(
            f"round {r}: " + json.dumps({k: v[-1] for k, v in runs.items() if v}), file=sys.stderr
        )

    inputs = {"items": args.items, "workers": args.workers, "rounds": args.rounds}
    go_name = "client-go v0.34.4 workqueue (TypedRateLimitingQueue), GOMAXPROCS=1"
    why = None if have_go else f"{GO_BIN} missing: build it with `just bench-go-build`"
    for phase in ("sequential", "concurrent"):
        what = {
            "sequential": f"work queue add+get+done, {args.items} distinct keys, one task",
            "concurrent": f"work queue add(x2)+get+done, {args.items} keys, 1 producer, "
            f"{args.workers} workers",
        }[phase]
        results.write(
            f"workqueue-{phase}-vs-client-go",
            what=what,
            unit="ops/s",
            ours=[x[phase] for x in runs["asyncio"]],
            baseline_name=go_name if have_go else None,
            baseline=[x[phase] for x in runs["client-go"]],
            better="higher",
            goal=None,
            why=why,
            inputs=inputs,
        )
        if not have_uvloop:
            continue
        results.write(
            f"event-loop-uvloop-vs-asyncio-workqueue-{phase}",
            what=f"{what}: our queue on uvloop vs on asyncio",
            unit="ops/s",
            ours=[x[phase] for x in runs["uvloop"]],
            baseline_name="our queue on the default asyncio loop",
            baseline=[x[phase] for x in runs["asyncio"]],
            better="higher",
            goal=None,
            inputs=inputs,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
