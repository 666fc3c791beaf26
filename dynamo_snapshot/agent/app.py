"""The agent process assembled: manager, CRI client, reconciler, probes.

``/healthz`` includes ``cri``: the runtime answered ``Version`` within the last
``3 * period`` seconds (a background prober asks every ``period``: a health check must not wait on
a socket). ``/readyz`` is the manager's: the informers have synced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio

from dynamo_snapshot.agent.config import AgentConfig
from dynamo_snapshot.agent.cri.client import CriClient, CriError
from dynamo_snapshot.agent.reconciler import Agent
from dynamo_snapshot.runtime import Manager, ManagerOptions

log = logging.getLogger(__name__)

PROBE_PERIOD_S: Final = 5.0


class CriProbe:
    """A runnable that asks the runtime for its version every ``period`` seconds."""

    need_leader_election = False

    def __init__(self, cri: CriClient, period: float = PROBE_PERIOD_S) -> None:
        self.cri = cri
        self.period = period
        self.last_ok: float | None = None
        self.last_error = ""
        self._stop = anyio.Event()

    def healthy(self) -> bool:
        return self.last_ok is not None and time.monotonic() - self.last_ok < 3 * self.period

    async def probe(self) -> bool:
        try:
            await self.cri.version(timeout=self.period)
        except CriError as err:
            if str(err) != self.last_error:
                log.warning("CRI runtime does not answer: %s", err)
            self.last_error = str(err)
            return False
        self.last_ok = time.monotonic()
        self.last_error = ""
        return True

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.probe()
            with anyio.move_on_after(self.period):
                await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def assemble(
    api_client: Any,
    cfg: AgentConfig,
    options: ManagerOptions,
    *,
    identity: str | None = None,
) -> AsyncIterator[tuple[Manager, Agent]]:
    """A wired manager and agent; the CRI channel is closed on exit. ``await mgr.run()``."""
    async with CriClient(cfg.runtime_endpoint, timeout=cfg.cri_timeout_seconds) as cri:
        mgr = Manager(api_client, options, field_manager="dynamo-snapshot-agent")
        agent = Agent(mgr, cri, cfg, identity=identity)
        agent.wire()
        probe = CriProbe(cri)
        await probe.probe()
        mgr.add(probe)
        mgr.add_healthz_check("cri", probe.healthy)
        yield mgr, agent
