"""A tiny manager process for the leader-election tests (not a test module).

It reconciles the ConfigMaps labelled ``app=leader-test`` in one namespace, with leader election on
the Lease named by ``--lease``, and appends a JSON line when a reconcile starts and one when it is
done to ``--log`` (and a line when it starts and exits), each with a wall-clock time, so the test
can tell which replica acted and when. Reconciles of ``slow-*`` objects last ``--slow`` seconds.
SIGTERM shuts it down the way a Pod's termination would.

    python tests/integration/runtime/leader_app.py --kubeconfig K --namespace NS --lease L \\
        --identity a --log /tmp/a.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from kubernetes_asyncio import client, config

from dynamo_snapshot.runtime.builder import ControllerBuilder
from dynamo_snapshot.runtime.leaderelection import LeaderElectionLost
from dynamo_snapshot.runtime.manager import Manager, ManagerOptions
from dynamo_snapshot.runtime.reconcile import Request
from dynamo_snapshot.runtime.resource import CONFIGMAPS

SELECTOR = "app=leader-test"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--lease", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--log", required=True, type=Path)
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--retry-period", type=float, default=2.0)
    p.add_argument("--graceful", type=float, default=5.0, help="graceful shutdown timeout")
    p.add_argument("--slow", type=float, default=0.0, help="reconciles of slow-* take this long")
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    log_file = args.log.open("a", buffering=1)

    def note(event: str, **fields: Any) -> None:
        line = {"event": event, "identity": args.identity, "pid": os.getpid(), **fields}
        log_file.write(json.dumps({**line, "t": time.time()}) + "\n")

    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=args.kubeconfig, client_configuration=cfg, persist_config=False
    )
    api = client.ApiClient(configuration=cfg)
    try:
        mgr = Manager(
            api,
            ManagerOptions(
                metrics_bind_address="127.0.0.1:0",
                health_probe_bind_address="127.0.0.1:0",
                namespace=args.namespace,
                leader_election=True,
                leader_election_id=args.lease,
                leader_election_namespace=args.namespace,
                identity=args.identity,
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
                graceful_shutdown_timeout=args.graceful,
            ),
        )

        async def reconcile(req: Request) -> None:
            note("reconcile", key=req.key)
            if req.name.startswith("slow-"):
                await anyio.sleep(args.slow)  # a reconcile in flight when SIGTERM comes
            note("done", key=req.key)

        ControllerBuilder(mgr).named("leader-test").for_(
            CONFIGMAPS, label_selector=SELECTOR
        ).complete(reconcile)
        note("start")
        try:
            await mgr.run()
        except LeaderElectionLost:
            note("lost")
            return 1
        note("exit")
        return 0
    finally:
        await api.close()
        log_file.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sys.exit(anyio.run(main, parse(sys.argv[1:])))
