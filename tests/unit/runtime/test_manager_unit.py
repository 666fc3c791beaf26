"""Manager: option parsing, and on a fake clock the order of a graceful shutdown (the Lease is
renewed until the leader-only runnables have stopped, then released), leader loss (leader-only
runnables cancelled at once, run() raises) and the probes. The Lease API is the in-memory
stand-in of test_leaderelection_unit (FakeLeaseClient); the live round trip between processes
is in tests/integration/runtime/test_leaderelection_live.py."""

from __future__ import annotations

import types
from typing import Any

import aiohttp
import anyio
import pytest

from dynamo_snapshot.runtime.cache import InformerCache
from dynamo_snapshot.runtime.client import RawList
from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.leaderelection import LeaderElectionLost
from dynamo_snapshot.runtime.manager import Manager, ManagerOptions, parse_bind_address
from dynamo_snapshot.runtime.resource import CONFIGMAPS
from tests.support import raw_list, wait_for
from tests.unit.runtime.test_leaderelection_unit import FakeLeaseClient


def test_parse_bind_address() -> None:
    assert parse_bind_address(":8080") == ("0.0.0.0", 8080)
    assert parse_bind_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind_address("[::1]:9090") == ("::1", 9090)
    assert parse_bind_address("0") is None
    with pytest.raises(ValueError, match="host:port"):
        parse_bind_address("8080x")


def test_leader_election_needs_an_id() -> None:
    with pytest.raises(ValueError, match="leader_election_id"):
        Manager(object(), ManagerOptions(leader_election=True))


def stand_in_api_client() -> Any:
    """Enough of a kubernetes_asyncio ApiClient for a Manager that never reaches a server."""
    return types.SimpleNamespace(configuration=types.SimpleNamespace(host="http://127.0.0.1:9"))


class Recorder:
    """A leader-only runnable whose stop() does not end it at once (a reconcile in flight);
    it ends when the test sets ``finish``. Every step goes to the shared ``log``."""

    need_leader_election = True

    def __init__(self, log: list[str], name: str = "worker", leader: bool = True) -> None:
        self.log = log
        self.name = name
        self.need_leader_election = leader
        self.finish = anyio.Event()
        self.running = False

    async def run(self) -> None:
        self.running = True
        self.log.append(f"{self.name} started")
        try:
            await self.finish.wait()
            self.log.append(f"{self.name} finished")
        except anyio.get_cancelled_exc_class():
            self.log.append(f"{self.name} cancelled")
            raise
        finally:
            self.running = False

    def stop(self) -> None:
        self.log.append(f"{self.name} asked to stop")


class LoggingLeases(FakeLeaseClient):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def update(self, resource: Any, obj: dict[str, Any], namespace: str) -> Any:
        written = await super().update(resource, obj, namespace)
        holder = written["spec"]["holderIdentity"]
        self.log.append("lease released" if not holder else "lease written")
        return written


def leader_manager(clock: FakeClock, leases: FakeLeaseClient, **opts: Any) -> Manager:
    mgr = Manager(
        stand_in_api_client(),
        ManagerOptions(
            **{
                "metrics_bind_address": "0",
                "health_probe_bind_address": "127.0.0.1:0",
                "leader_election": True,
                "leader_election_id": "lease",
                "leader_election_namespace": "ns",
                "identity": "me",
                "handle_signals": False,
                "graceful_shutdown_timeout": 30.0,
                **opts,
            }
        ),
        clock=clock,
    )
    assert mgr.elector is not None
    mgr.elector.client = leases  # type: ignore[assignment]
    return mgr


async def step(clock: FakeClock, seconds: float, by: float = 0.5) -> None:
    """Advance the fake clock in small steps, letting woken tasks run after each."""
    for _ in range(round(seconds / by)):
        clock.advance(by)
        await anyio.wait_all_tasks_blocked()


async def test_graceful_shutdown_keeps_renewing_until_leaders_stopped_then_releases() -> None:
    """Defect 1: the Lease must stay renewed while reconciles in flight finish; a standby takes
    over only after the old leader stopped and released."""
    log: list[str] = []
    clock, leases = FakeClock(), LoggingLeases(log)
    mgr = leader_manager(clock, leases)
    worker = Recorder(log)
    mgr.add(worker)
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(lambda: worker.running, 5, "the leader-only runnable to start")
        mgr.stop()
        await anyio.wait_all_tasks_blocked()
        mark = len(log)
        # 25 s of shutdown (more than the 15 s lease): a standby would take over were the
        # Lease not renewed meanwhile.
        await step(clock, 25)
        during = log[mark:]
        assert during.count("lease written") >= 10, during
        assert leases.holder == "me"
        assert "lease released" not in log
        worker.finish.set()
    assert log.index("worker finished") < log.index("lease released")
    assert log[-1] == "lease released"
    assert leases.holder == ""


async def test_graceful_timeout_cancels_then_releases() -> None:
    log: list[str] = []
    clock, leases = FakeClock(), LoggingLeases(log)
    mgr = leader_manager(clock, leases, graceful_shutdown_timeout=5.0)
    worker = Recorder(log)
    mgr.add(worker)
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(lambda: worker.running, 5, "the leader-only runnable to start")
        mgr.stop()
        await step(clock, 6)
    assert "worker cancelled" in log
    assert log.index("worker cancelled") < log.index("lease released")


async def test_lease_loss_cancels_leaders_at_once_and_run_raises() -> None:
    log: list[str] = []
    clock, leases = FakeClock(), LoggingLeases(log)
    mgr = leader_manager(clock, leases)
    leader, follower = Recorder(log, "leader"), Recorder(log, "follower", leader=False)
    mgr.add(leader)
    mgr.add(follower)
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            await mgr.run()
        except LeaderElectionLost as err:
            raised.append(err)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await wait_for(lambda: leader.running and follower.running, 5, "both to start")
        leases.down = True  # every renewal fails from now on
        await step(clock, 13)  # past the 10 s renew deadline
        assert "leader cancelled" in log, "a leader that lost its Lease must stop at once"
        assert not mgr.is_leader
        follower.finish.set()
    assert len(raised) == 1
    # The follower was asked to stop gracefully, not cancelled; nothing was released.
    assert "follower finished" in log
    assert "lease released" not in log


async def test_readyz_fails_until_the_caches_synced() -> None:
    gate = anyio.Event()

    class SlowLister:
        """FAKE API server whose first list waits for the test."""

        host = "fake"

        async def list_raw(self, *a: Any, **kw: Any) -> RawList:
            await gate.wait()
            return raw_list([], "1")

        async def watch(self, *a: Any, **kw: Any) -> Any:
            await anyio.sleep_forever()
            yield  # pragma: no cover

    mgr = Manager(
        stand_in_api_client(),
        ManagerOptions(
            metrics_bind_address="0",
            health_probe_bind_address="127.0.0.1:0",
            handle_signals=False,
        ),
    )
    mgr.cache = InformerCache(SlowLister())  # type: ignore[arg-type]
    mgr.cache.informer_for(CONFIGMAPS)

    async def probe(path: str) -> tuple[int, str]:
        assert mgr.health_address is not None
        host, port = mgr.health_address
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://{host}:{port}{path}?verbose") as r,
        ):
            return r.status, await r.text()

    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(lambda: mgr.health_address is not None, 5, "the probe server")
        status, text = await probe("/readyz")
        assert status == 500
        assert "[-]informers failed" in text
        assert (await probe("/healthz"))[0] == 200
        gate.set()
        await wait_for(lambda: probe("/readyz"), 5, "readyz")
        await wait_for(lambda: _ok(probe("/readyz")), 5, "readyz to pass")
        mgr.add_readyz_check("broken", lambda: 1 / 0 == 0)
        status, text = await probe("/readyz")
        assert status == 500
        assert "[-]broken failed" in text
        mgr.stop()


async def _ok(result: Any) -> bool:
    status, _ = await result
    return bool(status == 200)
