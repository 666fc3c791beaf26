"""kopf contender: the lightest kopf handler for the workload, ``@kopf.on.event``.

``on.event`` is kopf's raw watch-event handler: no diff base, no progress annotations, no writes
back to the object, so kopf does as little per event as it can. Everything else is kopf's default
(per-object workers, its 0.1 s batch window). kopf hands the handler the object itself, so there
is no cache read to make. Posting of k8s Events and peering are switched off (``--standalone``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import kopf

from bench.contenders.common import GROUP, PLURAL, VERSION, Recorder, parser


def main() -> None:
    args = parser(__doc__ or "").parse_args()
    os.environ["KUBECONFIG"] = args.kubeconfig
    rec = Recorder(args.expect)
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: Any, **_: Any) -> None:
        settings.posting.enabled = False
        settings.watching.client_timeout = 600

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: Any, body: Any, **_: Any) -> None:
        if event.get("type") == "DELETED":
            return
        meta = body.get("metadata", {})
        rec.record(f"{meta.get('namespace')}/{meta.get('name')}", body)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kopf").setLevel(logging.WARNING)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()

        def request_stop() -> None:
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_stop)
        await kopf.operator(
            registry=registry,
            standalone=True,
            namespaces=[args.namespace],
            stop_flag=stop,
        )

    if args.loop == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
    rec.dump(args.out)


if __name__ == "__main__":
    main()
