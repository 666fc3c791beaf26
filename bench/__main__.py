"""`python -m bench [NAME ...] [-- ARGS]`: run benchmarks by name (all when none is given).

Names: cache (in-cache representation, standalone), workqueue (ours vs client-go, standalone),
loopstall (event-loop stall during a 50k relist and resync, ours vs the code before, standalone),
informer (informer memory per Pod, needs a cluster), latency (event to reconcile-start latency and
throughput vs controller-runtime and kopf, needs a cluster), controllers (N DynamoCheckpoints to
Ready through both controllers, cache reads vs live reads; starts its own control planes).
The other cluster benchmarks use --kubeconfig, else $KUBECONFIG, else the local cluster of
`./hack/just up`. Arguments after `--` go to every
benchmark named (so name exactly one when passing flags).
"""

from __future__ import annotations

import importlib
import sys

from bench import report

# name -> module; imported only when run, so that one benchmark's optional dependencies (msgspec,
# kopf, uvloop) never stop another from running.
BENCHMARKS: dict[str, str] = {
    "cache": "bench.cache_representation",
    "workqueue": "bench.workqueue",
    "informer": "bench.informer_memory",
    "latency": "bench.latency",
    "controllers": "bench.controllers_scale",
    "loopstall": "bench.loop_stall",
}


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"== bench {name}", file=sys.stderr, flush=True)
        try:
            rc = importlib.import_module(BENCHMARKS[name]).main(extra)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        if rc:
            failed.append(name)
    print(report.render(), flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
