"""Our contender: dynamo_snapshot.runtime's InformerCache, Controller and metrics.

Wired the way a controller of this project is: a shared informer from the cache, a Controller
watching it with EnqueueRequestForObject, ``--workers`` concurrent reconciles, controller-runtime's
metrics recorded (as the Go baseline records them), no tracing exporter. The reconcile reads the
object from the cache and records ``(spec.stamp, now)`` at its start; nothing else.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import anyio

from bench import kube
from bench.contenders.common import Recorder, parser
from dynamo_snapshot.runtime.cache import InformerCache
from dynamo_snapshot.runtime.controller import Controller
from dynamo_snapshot.runtime.errors import NotFound
from dynamo_snapshot.runtime.handler import EnqueueRequestForObject
from dynamo_snapshot.runtime.metrics import Metrics
from dynamo_snapshot.runtime.reconcile import Request, Result


async def run(kubeconfig: Path, namespace: str, workers: int, rec: Recorder) -> None:
    async with kube.connect(kubeconfig) as c:
        cache = InformerCache(c)
        informer = cache.informer_for(kube.BENCHOBJECTS, namespace)

        async def reconcile(req: Request) -> Result | None:
            try:
                obj = cache.get_nowait(kube.BENCHOBJECTS, req.name, req.namespace)
            except NotFound:
                return None
            rec.record(req.key, obj)
            return None

        ctrl = Controller(
            "benchobject",
            reconcile,
            max_concurrent_reconciles=workers,
            metrics=Metrics(),
            need_leader_election=False,
        )
        ctrl.watches(informer, EnqueueRequestForObject())
        async with anyio.create_task_group() as tg:
            tg.start_soon(cache.run)
            tg.start_soon(ctrl.run)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
            ctrl.stop()
            tg.cancel_scope.cancel()


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    rec = Recorder(args.expect)
    coro = run(Path(args.kubeconfig), args.namespace, args.workers, rec)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    rec.dump(args.out)


if __name__ == "__main__":
    main()
