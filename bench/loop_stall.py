"""Benchmark: the longest event-loop stall while an informer relists and resyncs 50k Pods.

An informer runs on the process's one event loop, beside lease renewal, the probes and every
other watch. Before issue 8 a relist stored and announced the whole list in one synchronous pass,
and a resync decoded every cached object at once: with 50k Pods the loop was held for seconds.
This benchmark measures the longest gap between two wakeups of a 1 ms ticker task while:

* ``initial-list``: the first list of N Pods is decoded, stored and announced (``on_add``);
* ``changed-relist``: a relist in which every Pod changed (each one an ``on_update``);
* ``resync``: ``on_update(obj, obj)`` for every cached Pod.

The handler is what a controller installs: it maps the object to a key and adds it to a set (the
work queue's dedup set). The list answer is real JSON decoded by each contender's own list
decoding (``Client.decode_list`` for ours, the whole-body msgspec decode for the baseline); only
the network is left out (a FAKE lister hands over the bytes), because the stall being measured
is CPU work in this process.

Ours is this tree's informer. The baseline is the informer as it was before the fix, extracted
from git (``--baseline-commit``, default the commit this branch started from) into a temporary
package and run on the same inputs. Each measurement runs in a fresh subprocess; the two
contenders alternate over rounds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from bench import results
from bench.pods import synthetic_pod

BASELINE_COMMIT = "67502ae"
ROOT = Path(__file__).resolve().parent.parent
PHASES = ("initial-list", "changed-relist", "resync")


class _Keys:
    """A controller's handler, reduced to its cost: object → key → dedup set."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def _add(self, obj: Any) -> None:
        meta = obj.get("metadata") or {}
        self.keys.add(f"{meta.get('namespace')}/{meta.get('name')}")

    def on_add(self, obj: Any) -> None:
        self._add(obj)

    def on_update(self, old: Any, new: Any) -> None:
        self._add(new)

    def on_delete(self, obj: Any) -> None:
        pass


class _FakeLister:
    """FAKE API server: answers every list with ``payload`` (real JSON), decoded by the
    contender's own list decoding; watches never end."""

    host = "bench"

    def __init__(self, decode: Any) -> None:
        self.decode = decode
        self.payload = b""

    async def list_raw(self, resource: Any, namespace: Any = None, **kw: Any) -> Any:
        return self.decode(self.payload)

    async def watch(self, *a: Any, **kw: Any) -> Any:
        await anyio.sleep_forever()
        yield  # pragma: no cover


async def _longest_stall(work: Any) -> tuple[float, float]:
    """Run ``work`` (a coroutine) beside a 1 ms ticker; return (longest gap, duration) in s."""
    gaps: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await anyio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        await work
        done.set()
    return max(gaps), time.perf_counter() - t0 - 0.01


async def _worker(contender: str, package: str, payloads: list[Path]) -> dict[str, Any]:
    informer_mod = importlib.import_module(f"{package}.informer")
    client_mod = importlib.import_module(f"{package}.client")
    resource_mod = importlib.import_module(f"{package}.resource")
    # Ours splits the body item by item (client.decode_list); the baseline decoded it at once.
    decode = getattr(client_mod, "decode_list", None) or client_mod._RAW_LIST_DECODER.decode
    fake = _FakeLister(decode)
    inf = informer_mod.SharedInformer(fake, resource_mod.PODS)
    inf.add_event_handler(_Keys())
    out: dict[str, Any] = {}
    fake.payload = payloads[0].read_bytes()
    out["initial-list"] = await _longest_stall(inf.reflector._list())
    fake.payload = payloads[1].read_bytes()
    out["changed-relist"] = await _longest_stall(inf.reflector._list())
    fake.payload = b""

    async def resync() -> None:
        result = inf.resync()
        if result is not None:  # ours is a coroutine; the baseline's was synchronous
            await result

    out["resync"] = await _longest_stall(resync())
    out["objects"] = len(inf.store)
    return out


def _payload(n: int, rv_offset: int, path: Path) -> None:
    items = []
    for i in range(n):
        pod = synthetic_pod(i, "bench")
        pod["metadata"]["resourceVersion"] = str(rv_offset + i)
        items.append(pod)
    body = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(rv_offset + n)},
        "items": items,
    }
    path.write_bytes(orjson.dumps(body))


def _extract_baseline(commit: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "dynamo_snapshot/runtime"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "dynamo_snapshot" / "runtime").rename(into / "baseline_runtime")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--pods", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    p.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    p.add_argument("--baseline-dir", help=argparse.SUPPRESS)
    p.add_argument("--payloads", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        package = "dynamo_snapshot.runtime"
        if args.worker == "baseline":
            sys.path.insert(0, args.baseline_dir)
            package = "baseline_runtime"
        payloads = [Path(x) for x in args.payloads]
        print(json.dumps(anyio.run(_worker, args.worker, package, payloads)))
        return 0

    with tempfile.TemporaryDirectory(prefix="loop-stall-") as tmp:
        work = Path(tmp)
        base_dir = work / "baseline"
        base_dir.mkdir()
        _extract_baseline(args.baseline_commit, base_dir)
        payloads = [work / "list1.json", work / "list2.json"]
        _payload(args.pods, 1, payloads[0])
        _payload(args.pods, 10 * args.pods, payloads[1])  # every Pod changed
        size = payloads[0].stat().st_size
        print(f"loop-stall: {args.pods} Pods, list of {size / 1e6:.0f} MB", file=sys.stderr)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
        for r in range(args.rounds):
            for contender in ("baseline", "ours") if r % 2 else ("ours", "baseline"):
                cmd = [sys.executable, "-m", "bench.loop_stall", "--worker", contender]
                cmd += ["--baseline-dir", str(base_dir), "--payloads", *map(str, payloads)]
                proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                assert got["objects"] == args.pods, got
                runs[contender].append(got)
                summary = {k: f"{got[k][0] * 1000:.0f} ms" for k in PHASES}
                print(f"  round {r + 1} {contender}: longest stall {summary}", file=sys.stderr)

    baseline_name = f"the informer before the fix (git {args.baseline_commit}), same inputs"
    for phase in PHASES:
        what = {
            "initial-list": "first list",
            "changed-relist": "relist in which every Pod changed",
            "resync": "resync",
        }[phase]
        results.write(
            f"loop-stall-{phase}-{args.pods}",
            what=(
                f"longest event-loop stall (gap between two ticks of a 1 ms timer) during an "
                f"informer {what} of {args.pods} Pods (~4 KB each), handler enqueuing keys"
            ),
            unit="s",
            ours=[run[phase][0] for run in runs["ours"]],
            baseline_name=baseline_name,
            baseline=[run[phase][0] for run in runs["baseline"]],
            better="lower",
            goal=None,
            inputs={
                "pods": args.pods,
                "rounds": args.rounds,
                "phase_seconds_ours": [run[phase][1] for run in runs["ours"]],
                "phase_seconds_baseline": [run[phase][1] for run in runs["baseline"]],
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
