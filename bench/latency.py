"""Benchmark 1: event -> reconcile-start latency and reconcile throughput, on the real apiserver.

Contenders (each a separate process, run one at a time, alternated in every round, on the same
objects and the same update sequence):

* ``ours``: dynamo_snapshot.runtime's controller on asyncio (bench/contenders/ours.py);
* ``ours-uvloop``: the same on uvloop (the event-loop comparison);
* ``controller-runtime``: a minimal Go controller-runtime controller (hack/bench-go/crlatency);
* ``kopf``: kopf with an ``@kopf.on.event`` handler (bench/contenders/kopf_op.py).

Each reconciles BenchObjects (a CRD of its own, applied at the start) with a no-op reconcile that
records ``now - spec.stamp`` at reconcile start, where ``spec.stamp`` is the wall-clock time the
load generator (this process) put into the object just before sending the update.

For each rate: start the contender; it lists the N objects and reconciles them all (the rate of
that drain is the *throughput* figure: reconciles/s with the queue full), then prints READY; this
process then merge-patches objects round-robin at the rate for --duration seconds, waits for the
tail, stops the contender with SIGTERM and reads its records. Latency percentiles are over the
updates of that phase (each stamp counted once, at its first reconcile).

Results: bench/results/event-latency-*.json, reconcile-throughput-*.json, event-loop-*.json and
latency-details.json (every run of every contender).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from bench import kube, results


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


CACHE = Path(os.environ.get("DYNAMO_SNAPSHOT_CACHE", Path.home() / ".cache" / "dynamo-snapshot"))
GO_BIN = CACHE / "bench-go" / "crlatency"
CONTENDERS = ["ours", "ours-uvloop", "controller-runtime", "kopf"]
BASELINE_NAMES = {
    "controller-runtime": "controller-runtime v0.22.4 (Go, client-go v0.34.4), no-op reconcile",
    "kopf": f"kopf {_version('kopf')} @kopf.on.event handler (Python, default settings)",
}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def command(
    contender: str, kubeconfig: Path, ns: str, expect: int, out: Path, workers: int
) -> list[str]:
    common = ["--kubeconfig", str(kubeconfig), "--namespace", ns, "--expect", str(expect)]
    common += ["--out", str(out), "--workers", str(workers)]
    if contender == "controller-runtime":
        return [str(GO_BIN), *common]
    module = {"ours": "ours", "ours-uvloop": "ours", "kopf": "kopf_op"}[contender]
    loop = ["--loop", "uvloop"] if contender.endswith("uvloop") else []
    return [sys.executable, "-m", f"bench.contenders.{module}", *common, *loop]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_log(path: Path) -> BinaryIO:
    return path.open("ab")


def _print_logs(tmp: Path) -> None:
    for log in sorted(tmp.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)


async def write_phase(
    c: Any, ns: str, n: int, rate: float, duration: float, offset: int, concurrency: int = 64
) -> dict[str, Any]:
    """Merge-patch objects round-robin at `rate`/s for `duration` s; stamp each at send time."""
    total = int(rate * duration)
    sem = asyncio.Semaphore(concurrency)
    ok = 0
    errors = 0

    async def one(k: int) -> None:
        nonlocal ok, errors
        try:
            patch = {"spec": {"stamp": time.time(), "seq": k}}
            await c.patch_merge(kube.BENCHOBJECTS, kube.object_name((offset + k) % n), patch, ns)
            ok += 1
        except Exception as e:
            errors += 1
            if errors <= 3:
                print(f"  write error: {e!r}", file=sys.stderr)
        finally:
            sem.release()

    t0_wall = time.time()
    t0 = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for k in range(total):
        delay = t0 + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await sem.acquire()
        tasks.append(asyncio.create_task(one(k)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - t0
    return {
        "t0_wall": t0_wall,
        "sent": total,
        "ok": ok,
        "errors": errors,
        "achieved_rate": ok / elapsed if elapsed > 0 else 0.0,
    }


async def run_one(
    contender: str,
    c: Any,
    kubeconfig: Path,
    ns: str,
    n: int,
    rate: float,
    duration: float,
    offset: int,
    workers: int,
    tmp: Path,
) -> dict[str, Any]:
    out = tmp / f"{contender}-{rate}-{offset}.json"
    cmd = command(contender, kubeconfig, ns, n, out, workers)
    t_start = time.time()
    with _open_log(tmp / f"{contender}.log") as log:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=log
        )
    assert proc.stdout is not None
    try:
        ready = False
        with anyio.move_on_after(300):
            while line := await proc.stdout.readline():
                if line.strip() == b"READY":
                    ready = True
                    break
        if not ready:
            raise RuntimeError(f"{contender} did not reconcile the {n} objects within 300 s")
        t_ready = time.time()
        cpu0 = _cpu_seconds(proc.pid)
        w = await write_phase(c, ns, n, rate, duration, offset)
        await asyncio.sleep(3.0)
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    records: list[list[float]] = json.loads(out.read_text())["records"]
    initial = [s for st, s in records if st < w["t0_wall"] - 1.0]
    first_seen: dict[float, float] = {}
    for stamp, start in records:
        if stamp >= w["t0_wall"] - 0.001 and (stamp not in first_seen or start < first_seen[stamp]):
            first_seen[stamp] = start
    lat = sorted(start - stamp for stamp, start in first_seen.items())
    drain = (max(initial) - min(initial)) if len(initial) > 1 else math.nan
    return {
        "contender": contender,
        "rate": rate,
        "write": w,
        "startup_to_ready_s": t_ready - t_start,
        "sync_rate": n / (t_ready - t_start),
        "initial_reconciles": len(initial),
        "throughput": len(initial) / drain if drain and drain > 0 else math.nan,
        "latencies": len(lat),
        "coverage": len(lat) / w["ok"] if w["ok"] else 0.0,
        "cpu_s": cpu,
        "cpu_ms_per_event": cpu / len(lat) * 1e3 if lat else math.nan,
        "events_per_cpu_s": len(lat) / cpu if cpu > 0 else math.nan,
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "max": lat[-1] if lat else math.nan,
    }


async def amain(args: argparse.Namespace) -> int:
    kubeconfig = kube.find_kubeconfig(args.kubeconfig)
    contenders = list(args.contenders)
    if "controller-runtime" in contenders and not GO_BIN.exists():
        print(
            f"{GO_BIN} missing (run `just bench-go-build`); no controller-runtime baseline",
            file=sys.stderr,
        )
        contenders.remove("controller-runtime")
    for contender, module in (("kopf", "kopf"), ("ours-uvloop", "uvloop")):
        if contender in contenders and importlib.util.find_spec(module) is None:
            print(f"{module} is not installed; skipping {contender}", file=sys.stderr)
            contenders.remove(contender)
    runs: list[dict[str, Any]] = []
    async with kube.connect(kubeconfig) as c:
        await kube.ensure_namespace(c, args.namespace)
        await kube.ensure_crd(c)
        t = time.monotonic()
        made = await kube.create_all(
            c,
            kube.BENCHOBJECTS,
            args.namespace,
            (kube.bench_object(i, args.namespace) for i in range(args.objects)),
        )
        print(f"{made} BenchObjects created in {time.monotonic() - t:.1f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmpdir:
            offset = 0
            for r in range(args.rounds):
                for rate in args.rates:
                    # Rotate the order every round so that no contender always goes first.
                    order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                    for contender in order:
                        res = await run_one(
                            contender,
                            c,
                            kubeconfig,
                            args.namespace,
                            args.objects,
                            rate,
                            args.duration,
                            offset,
                            args.workers,
                            Path(tmpdir),
                        )
                        res["round"] = r
                        runs.append(res)
                        print(
                            f"round {r} {rate:g}/s {contender}: p50={res['p50'] * 1e3:.1f} ms "
                            f"p99={res['p99'] * 1e3:.1f} ms coverage={res['coverage']:.3f} "
                            f"achieved={res['write']['achieved_rate']:.0f}/s "
                            f"throughput={res['throughput']:.0f}/s "
                            f"cpu/event={res['cpu_ms_per_event']:.3f} ms",
                            file=sys.stderr,
                        )
                    offset += int(rate * args.duration)
            if args.keep_logs:
                _print_logs(Path(tmpdir))
        if not args.keep:
            await kube.delete_namespace(c, args.namespace)
    report(runs, args, contenders)
    return 0


def _values(
    runs: list[dict[str, Any]], contender: str, key: str, rate: float | None = None
) -> list[float]:
    return [
        float(x[key])
        for x in runs
        if x["contender"] == contender
        and (rate is None or x["rate"] == rate)
        and not math.isnan(float(x[key]))
    ]


def report(runs: list[dict[str, Any]], args: argparse.Namespace, contenders: list[str]) -> None:
    inputs = {
        "objects": args.objects,
        "rates_per_s": args.rates,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "workers": args.workers,
        "achieved_rates_per_s": {
            str(rate): statistics.median(
                [x["write"]["achieved_rate"] for x in runs if x["rate"] == rate]
            )
            for rate in args.rates
        },
    }
    results.write_raw("latency-details", {"inputs": inputs, "runs": runs, "date": results.today()})
    if "ours" not in contenders:
        return
    for rate in args.rates:
        for pct, goal_cr in (("p50", None), ("p99", 2.0)):
            for base in ("controller-runtime", "kopf"):
                name = f"event-latency-{pct}-{rate:g}ups-vs-{base}"
                b = _values(runs, base, pct, rate) if base in contenders else []
                results.write(
                    name,
                    what=f"event to reconcile-start latency, {pct}, {args.objects} CRs, "
                    f"{rate:g} updates/s for {args.duration:g} s",
                    unit="s",
                    ours=_values(runs, "ours", pct, rate),
                    baseline_name=BASELINE_NAMES[base] if b else None,
                    baseline=b,
                    better="lower",
                    goal=goal_cr if base == "controller-runtime" else None,
                    why=None if b else f"{base} was not run",
                    inputs=inputs,
                )
    for base, goal in (("kopf", 10.0), ("controller-runtime", None)):
        b = _values(runs, base, "throughput") if base in contenders else []
        results.write(
            f"reconcile-throughput-vs-{base}",
            what=f"reconciles/s while draining the initial list of {args.objects} CRs "
            "(queue full, no-op reconcile)",
            unit="reconciles/s",
            ours=_values(runs, "ours", "throughput"),
            baseline_name=BASELINE_NAMES[base] if b else None,
            baseline=b,
            better="higher",
            goal=goal,
            why=None if b else f"{base} was not run",
            inputs=inputs,
        )
    for rate in args.rates:
        for base, goal in (("kopf", 10.0), ("controller-runtime", None)):
            b = _values(runs, base, "events_per_cpu_s", rate) if base in contenders else []
            results.write(
                f"event-capacity-{rate:g}ups-vs-{base}",
                what="update events handled per CPU-second of the controller process (its whole "
                f"CPU time over the update phase and tail), {args.objects} CRs, {rate:g} "
                "updates/s: the event rate one core would sustain",
                unit="events/CPU-s",
                ours=_values(runs, "ours", "events_per_cpu_s", rate),
                baseline_name=BASELINE_NAMES[base] if b else None,
                baseline=b,
                better="higher",
                goal=goal,
                why=None if b else f"{base} was not run",
                inputs=inputs,
            )
    for base, goal in (("kopf", 10.0), ("controller-runtime", None)):
        b = _values(runs, base, "sync_rate") if base in contenders else []
        results.write(
            f"initial-sync-rate-vs-{base}",
            what=f"objects/s from process start until all {args.objects} CRs were listed and "
            "reconciled once (start-up included)",
            unit="objects/s",
            ours=_values(runs, "ours", "sync_rate"),
            baseline_name=BASELINE_NAMES[base] if b else None,
            baseline=b,
            better="higher",
            goal=goal,
            why=None if b else f"{base} was not run",
            inputs=inputs,
        )
    if "ours-uvloop" in contenders:
        for rate in args.rates:
            results.write(
                f"event-loop-uvloop-vs-asyncio-p99-{rate:g}ups",
                what=f"ours on uvloop vs ours on asyncio: event to reconcile-start p99, "
                f"{args.objects} CRs, {rate:g} updates/s",
                unit="s",
                ours=_values(runs, "ours-uvloop", "p99", rate),
                baseline_name="ours on the default asyncio loop",
                baseline=_values(runs, "ours", "p99", rate),
                better="lower",
                goal=None,
                inputs=inputs,
            )
            results.write(
                f"event-loop-uvloop-vs-asyncio-capacity-{rate:g}ups",
                what=f"ours on uvloop vs ours on asyncio: update events per CPU-second, "
                f"{args.objects} CRs, {rate:g} updates/s",
                unit="events/CPU-s",
                ours=_values(runs, "ours-uvloop", "events_per_cpu_s", rate),
                baseline_name="ours on the default asyncio loop",
                baseline=_values(runs, "ours", "events_per_cpu_s", rate),
                better="higher",
                goal=None,
                inputs=inputs,
            )
        results.write(
            "event-loop-uvloop-vs-asyncio-throughput",
            what="ours on uvloop vs ours on asyncio: reconciles/s draining the initial list",
            unit="reconciles/s",
            ours=_values(runs, "ours-uvloop", "throughput"),
            baseline_name="ours on the default asyncio loop",
            baseline=_values(runs, "ours", "throughput"),
            better="higher",
            goal=None,
            inputs=inputs,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--kubeconfig")
    p.add_argument("--namespace", default="bench")
    p.add_argument("--objects", type=int, default=5000)
    p.add_argument("--rates", type=float, nargs="+", default=[50.0, 200.0, 500.0])
    p.add_argument("--duration", type=float, default=15.0, help="seconds of updates per run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=4, help="reconcile workers, every contender")
    p.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    p.add_argument("--keep-logs", action="store_true", help="print the contenders' logs")
    p.add_argument("--keep", action="store_true", help="keep the BenchObjects afterwards")
    p.add_argument(
        "--rerender",
        action="store_true",
        help="rewrite the result files from bench/results/latency-details.json; measure nothing",
    )
    args = p.parse_args(argv)
    if args.rerender:
        details = json.loads((results.RESULTS / "latency-details.json").read_text())
        inputs = details["inputs"]
        args.objects, args.duration = inputs["objects"], inputs["duration_s"]
        args.rounds, args.workers = inputs["rounds"], inputs["workers"]
        args.rates = details["inputs"]["rates_per_s"]
        ran = sorted({x["contender"] for x in details["runs"]}, key=CONTENDERS.index)
        report(details["runs"], args, ran)
        return 0
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
