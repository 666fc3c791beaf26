"""Leader election rules on a fake clock. The Lease API is a small in-memory stand-in
(`FakeLeaseClient`) with resourceVersion conflicts, so time can be stepped by hand; the real
round trip between processes is in tests/integration/runtime/test_leaderelection_live.py."""

from __future__ import annotations

import copy
from typing import Any

import anyio
import pytest

from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.errors import AlreadyExists, Conflict, NotFound
from dynamo_snapshot.runtime.leaderelection import LeaderElectionLost, LeaderElector
from dynamo_snapshot.runtime.resource import Resource


class FakeLeaseClient:
    """One Lease in memory, with optimistic locking; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise OSError("connection refused")

    async def get(self, resource: Resource, name: str, namespace: str) -> dict[str, Any]:
        self._check()
        if self.lease is None:
            raise NotFound(404, "NotFound", "leases not found")
        return copy.deepcopy(self.lease)

    async def create(self, resource: Resource, obj: dict[str, Any], namespace: str) -> Any:
        self._check()
        if self.lease is not None:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        self.rv += 1
        self.lease = {
            **copy.deepcopy(obj),
            "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)},
        }
        return copy.deepcopy(self.lease)

    async def update(self, resource: Resource, obj: dict[str, Any], namespace: str) -> Any:
        self._check()
        assert self.lease is not None
        if obj["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        self.rv += 1
        self.lease = {
            **copy.deepcopy(obj),
            "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)},
        }
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str:
        return str((self.lease or {}).get("spec", {}).get("holderIdentity") or "")


def elector(client: FakeLeaseClient, clock: FakeClock, identity: str) -> LeaderElector:
    return LeaderElector(
        client,  # type: ignore[arg-type]
        name="lease",
        namespace="ns",
        identity=identity,
        clock=clock,
    )


async def test_first_candidate_creates_the_lease_and_renews_it() -> None:
    client, clock = FakeLeaseClient(), FakeClock()
    a = elector(client, clock, "a")
    await a.acquire()
    assert a.is_leader
    assert client.holder == "a"
    spec = client.lease["spec"] if client.lease else {}
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    first_renew = spec["renewTime"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.hold)
        await anyio.wait_all_tasks_blocked()
        clock.advance(2.0)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert client.lease
    assert client.lease["spec"]["renewTime"] > first_renew
    assert client.lease["spec"]["acquireTime"] == spec["acquireTime"]


async def test_follower_waits_for_expiry_on_its_own_clock() -> None:
    client, clock = FakeLeaseClient(), FakeClock()
    a, b = elector(client, clock, "a"), elector(client, clock, "b")
    await a.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(b.acquire)
        await anyio.wait_all_tasks_blocked()
        # a stops renewing (it died): b takes over only after 15 s without a change.
        for _ in range(6):
            clock.advance(2.0)
            await anyio.wait_all_tasks_blocked()
            assert not b.is_leader
        clock.advance(10.0)
        await anyio.wait_all_tasks_blocked()
    assert b.is_leader
    assert client.holder == "b"
    assert client.lease
    assert client.lease["spec"]["leaseTransitions"] == 1


async def test_release_lets_a_follower_in_at_its_next_poll() -> None:
    client, clock = FakeLeaseClient(), FakeClock()
    a, b = elector(client, clock, "a"), elector(client, clock, "b")
    await a.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(b.acquire)
        await anyio.wait_all_tasks_blocked()
        assert await a.release()
        assert client.holder == ""
        assert not a.is_leader
        clock.advance(2.0 * 2.2)  # the longest jittered poll
        await anyio.wait_all_tasks_blocked()
    assert b.is_leader


async def test_renewal_failing_for_the_deadline_loses_leadership() -> None:
    client, clock = FakeLeaseClient(), FakeClock()
    a = elector(client, clock, "a")
    await a.acquire()
    lost = False

    async def hold() -> None:
        nonlocal lost
        with pytest.raises(LeaderElectionLost):
            await a.hold()
        lost = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        await anyio.wait_all_tasks_blocked()
        client.down = True
        for _ in range(5):  # 2 s to the first renewal, then retries every 2 s for 10 s
            clock.advance(2.0)
            await anyio.wait_all_tasks_blocked()
            assert not lost
        clock.advance(2.0)
        await anyio.wait_all_tasks_blocked()
    assert lost
    assert not a.is_leader
    assert a.healthy()


def test_timing_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(FakeLeaseClient(), name="l", namespace="n", renew_deadline=20)  # type: ignore[arg-type]
