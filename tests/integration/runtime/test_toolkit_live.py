"""The object helpers and the lease guard against the real API server: finalizer patches that
cannot lose another writer's finalizer, conflict retries, status writes skipped when unchanged,
and a lease guard that is exclusive, cancels its body when the Lease is taken, and releases
only its own Lease."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    LEASES,
    Conflict,
    HeldLease,
    LeaseHeld,
    LeaseLost,
    NotFound,
    RestClient,
    add_finalizer,
    lease_guard,
    remove_finalizer,
    retry_on_conflict,
)
from tests.support import wait_for


@pytest.fixture
def live(kube_api: ApiClient) -> RestClient:
    return RestClient(kube_api)


async def test_finalizers_are_added_and_removed_without_losing_anyone_elses(
    live: RestClient, namespace: str
) -> None:
    await live.create(CONFIGMAPS, {"metadata": {"name": "f"}}, namespace)
    stale = await live.get(CONFIGMAPS, "f", namespace)
    # Another controller adds its finalizer after we read: our patch must not drop it.
    await live.patch_merge(
        CONFIGMAPS, "f", {"metadata": {"finalizers": ["other.test/keep"]}}, namespace
    )
    written = await add_finalizer(live, CONFIGMAPS, stale, "ours.test/f")
    assert written["metadata"]["finalizers"] == ["other.test/keep", "ours.test/f"]
    again = await add_finalizer(live, CONFIGMAPS, written, "ours.test/f")
    assert again["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    # Removal from a stale copy keeps the other finalizer too.
    await live.patch_merge(CONFIGMAPS, "f", {"data": {"x": "1"}}, namespace)
    removed = await remove_finalizer(live, CONFIGMAPS, written, "ours.test/f")
    assert removed is not None
    assert removed["metadata"]["finalizers"] == ["other.test/keep"]
    # The last finalizer of a deleted object: removing it lets the object go.
    await live.delete(CONFIGMAPS, "f", namespace)
    held = await live.get(CONFIGMAPS, "f", namespace)
    assert held["metadata"].get("deletionTimestamp")
    gone = await remove_finalizer(live, CONFIGMAPS, held, "other.test/keep")
    assert gone is None or not gone["metadata"].get("finalizers")
    with pytest.raises(NotFound):
        await live.get(CONFIGMAPS, "f", namespace)
    assert await remove_finalizer(live, CONFIGMAPS, held, "other.test/keep") is None


async def test_retry_on_conflict_rereads_until_the_write_lands(
    live: RestClient, namespace: str
) -> None:
    await live.create(CONFIGMAPS, {"metadata": {"name": "c"}, "data": {"n": "0"}}, namespace)
    attempts = 0

    async def increment() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        obj = await live.get(CONFIGMAPS, "c", namespace)
        if attempts < 3:  # someone else writes between our read and our write, twice
            await live.patch_merge(
                CONFIGMAPS, "c", {"metadata": {"labels": {"a": str(attempts)}}}, namespace
            )
        obj["data"]["n"] = str(int(obj["data"]["n"]) + 1)
        return await live.update(CONFIGMAPS, obj, namespace)

    result = await retry_on_conflict(increment)
    assert attempts == 3
    assert result["data"]["n"] == "1"

    async def always_stale() -> dict[str, Any]:
        obj = await live.get(CONFIGMAPS, "c", namespace)
        await live.patch_merge(CONFIGMAPS, "c", {"data": {"x": str(time.time())}}, namespace)
        return await live.update(CONFIGMAPS, obj, namespace)

    with pytest.raises(Conflict):
        await retry_on_conflict(always_stale, attempts=2)


async def _lease(live: RestClient, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return await live.get(LEASES, name, namespace)
    except NotFound:
        return None


async def test_lease_guard_is_exclusive_and_released_by_delete(
    live: RestClient, namespace: str
) -> None:
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def worker(identity: str, hold_for: float) -> None:
        async with lease_guard(
            live, "job", namespace, identity=identity, duration=3.0, retry_period=0.2
        ):
            if inside:
                overlaps.append((*inside, identity))
            inside.append(identity)
            await anyio.sleep(hold_for)
            inside.remove(identity)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(worker, f"w{i}", 1.5)  # longer than a renew interval (1 s)
    assert overlaps == [], overlaps
    assert await _lease(live, "job", namespace) is None, "the last holder must delete its Lease"
    # Held by someone else: a one-shot attempt says who holds it.
    async with lease_guard(live, "job", namespace, identity="a", duration=3.0) as held:
        assert held.lease["spec"]["holderIdentity"] == "a"
        with pytest.raises(LeaseHeld) as info:
            async with lease_guard(live, "job", namespace, identity="b", acquire_timeout=0):
                pass
        assert info.value.holder == "a"
        assert held.renewals == 0


async def test_a_stolen_lease_cancels_the_body_and_is_not_deleted(
    live: RestClient, namespace: str
) -> None:
    cancelled_at: list[float] = []
    lost_lease: list[HeldLease] = []
    stolen_at = 0.0

    async def steal() -> None:
        nonlocal stolen_at
        while True:
            lease = await live.get(LEASES, "stolen", namespace)
            lease["spec"]["holderIdentity"] = "thief"
            try:
                await live.update(LEASES, lease, namespace)
            except Conflict:
                continue  # the victim renewed between our read and our write
            stolen_at = time.monotonic()
            return

    async def guarded() -> HeldLease:
        async with lease_guard(
            live, "stolen", namespace, identity="victim", duration=3.0, retry_period=0.2
        ) as held:
            lost_lease.append(held)
            await steal()
            try:
                await anyio.sleep(30)
            except anyio.get_cancelled_exc_class():
                cancelled_at.append(time.monotonic())
                raise
        return held

    with pytest.raises(LeaseLost, match="thief"):
        await guarded()
    held = lost_lease[0]
    assert held.lost
    assert cancelled_at, "the body was not cancelled"
    assert cancelled_at[0] - stolen_at < 3.0  # within a renew interval (1 s) and a round trip
    lease = await _lease(live, "stolen", namespace)
    assert lease is not None, "a lost lease is someone else's: it must not be deleted"
    assert lease["spec"]["holderIdentity"] == "thief"


async def test_a_stale_lease_is_taken_over_after_its_duration(
    live: RestClient, namespace: str
) -> None:
    """A crashed holder never deletes its Lease: the next one waits one duration, no more."""
    async with lease_guard(live, "stale", namespace, identity="crashed", duration=2.0):
        pass
    # Recreate the crash: a Lease held by someone who will never renew it.
    await live.create(
        LEASES,
        {
            "metadata": {"name": "stale"},
            "spec": {"holderIdentity": "crashed", "leaseDurationSeconds": 2},
        },
        namespace,
    )
    started = time.monotonic()
    async with lease_guard(
        live, "stale", namespace, identity="next", duration=2.0, retry_period=0.2
    ) as held:
        took = time.monotonic() - started
        assert held.lease["spec"]["holderIdentity"] == "next"
        assert held.lease["spec"]["leaseTransitions"] == 1
    assert 2.0 <= took < 5.0, took
    await wait_for(lambda: _gone(live, "stale", namespace), 10, "the Lease to be deleted")


async def _gone(live: RestClient, name: str, namespace: str) -> bool:
    return await _lease(live, name, namespace) is None
