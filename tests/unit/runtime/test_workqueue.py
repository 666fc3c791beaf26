"""Work queue semantics, with a fake clock: no test waits on real time."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.ratelimiter import ItemExponentialFailureRateLimiter
from dynamo_snapshot.runtime.workqueue import QueueShutDown, WorkQueue


def make(clock: FakeClock | None = None) -> WorkQueue[str]:
    return WorkQueue(
        "test",
        clock=clock or FakeClock(),
        rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000.0),
    )


async def test_fifo_and_dedup() -> None:
    q = make()
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert len(q) == 3
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_add_during_processing_is_requeued_after_done() -> None:
    q = make()
    q.add("a")
    item = await q.get()
    q.add("a")
    q.add("a")
    # Not handed to a second worker while the first holds it.
    assert len(q) == 0
    q.done(item)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_two_workers_never_hold_the_same_key() -> None:
    q = make()
    held: set[str] = set()
    handled = 0

    async def worker() -> None:
        nonlocal handled
        while True:
            try:
                k = await q.get()
            except QueueShutDown:
                return
            assert k not in held
            held.add(k)
            await anyio.lowlevel.checkpoint()
            q.add(k if handled % 3 else "hot")  # keep re-adding while processing
            held.discard(k)
            handled += 1
            q.done(k)
            if handled > 300:
                q.shut_down()

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(worker)
        for i in range(20):
            q.add(f"k{i % 5}")
            q.add("hot")
    assert handled > 300


async def test_get_blocks_until_add_and_wakes_one_worker() -> None:
    q = make()
    got: list[str] = []

    async def worker() -> None:
        got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        q.add("x")
        await anyio.wait_all_tasks_blocked()
        assert got == ["x"]
        q.add("y")
    assert sorted(got) == ["x", "y"]


async def test_add_after_waits_for_the_clock() -> None:
    clock = FakeClock()
    q = make(clock)
    got: list[str] = []

    async def worker() -> None:
        got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        q.add_after("late", 10.0)
        q.add_after("late", 20.0)  # the earlier deadline wins
        await anyio.wait_all_tasks_blocked()
        assert q.delayed == 1
        clock.advance(9.9)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        clock.advance(0.1)
    assert got == ["late"]
    assert q.delayed == 0


async def test_add_after_earlier_deadline_replaces_later() -> None:
    clock = FakeClock()
    q = make(clock)
    q.add_after("a", 100.0)
    q.add_after("a", 1.0)
    clock.advance(1.0)
    assert await q.get() == "a"
    q.done("a")
    clock.advance(200.0)
    # The superseded heap entry does not fire a second time.
    with anyio.move_on_after(0):
        await q.get()
        pytest.fail("stale delayed entry was handed out")


async def test_add_after_zero_adds_now() -> None:
    q = make()
    q.add_after("now", 0)
    assert len(q) == 1


async def test_rate_limited_backoff_forget_and_num_requeues() -> None:
    clock = FakeClock()
    q = make(clock)
    for expected in [0.005, 0.01, 0.02]:
        q.add_rate_limited("x")
        clock.advance(expected - 1e-6)
        assert len(q) == 0 or (await q.get()) is None  # still waiting
        with anyio.move_on_after(0):
            await q.get()
            pytest.fail("handed out before its backoff passed")
        clock.advance(2e-6)
        assert await q.get() == "x"
        q.done("x")
    assert q.num_requeues("x") == 3
    q.forget("x")
    assert q.num_requeues("x") == 0


async def test_shutdown_drains_queued_then_raises() -> None:
    q = make()
    q.add("a")
    q.add("b")
    q.add_after("later", 5.0)
    q.shut_down()
    q.add("ignored")
    assert await q.get() == "a"
    assert await q.get() == "b"
    with pytest.raises(QueueShutDown):
        await q.get()


async def test_shutdown_wakes_blocked_getters() -> None:
    q = make()
    raised = 0

    async def worker() -> None:
        nonlocal raised
        with pytest.raises(QueueShutDown):
            await q.get()
        raised += 1

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        q.shut_down()
    assert raised == 3


async def test_shutdown_with_drain_waits_for_processing() -> None:
    q = make()
    q.add("a")
    item = await q.get()
    drained = False

    async def drain() -> None:
        nonlocal drained
        await q.shut_down_with_drain()
        drained = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        await anyio.wait_all_tasks_blocked()
        assert not drained
        q.done(item)
    assert drained


async def test_cancelled_getter_passes_wakeup_on() -> None:
    q = make()
    got: list[str] = []

    async def worker() -> None:
        with contextlib.suppress(QueueShutDown):
            got.append(await q.get())

    first = anyio.CancelScope()

    async def cancelled_worker() -> None:
        with first:
            got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled_worker)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(worker)
        await anyio.wait_all_tasks_blocked()
        # Cancel the first waiter, then wake it before it runs: the key must reach the other one.
        first.cancel()
        q.add("k")
        await anyio.wait_all_tasks_blocked()
        q.shut_down()
    assert got == ["k"]
    assert len(q) == 0


class RecordingMetrics:
    def __init__(self) -> None:
        self.adds = 0
        self.depths: list[int] = []
        self.queued: list[float] = []
        self.work: list[float] = []
        self.retries = 0

    def added(self) -> None:
        self.adds += 1

    def depth(self, n: int) -> None:
        self.depths.append(n)

    def handed_out(self, queued_seconds: float) -> None:
        self.queued.append(queued_seconds)

    def finished(self, work_seconds: float) -> None:
        self.work.append(work_seconds)

    def retried(self) -> None:
        self.retries += 1


async def test_metrics_are_reported() -> None:
    clock = FakeClock()
    m = RecordingMetrics()
    q: WorkQueue[str] = WorkQueue("m", clock=clock, metrics=m)
    q.add("a")
    q.add("a")
    clock.advance(2.0)
    item = await q.get()
    clock.advance(3.0)
    assert q.in_flight_seconds() == (3.0, 3.0)
    q.done(item)
    q.add_rate_limited("a")
    assert m.adds == 1
    assert m.queued == [2.0]
    assert m.work == [3.0]
    assert m.depths == [1, 0]
    assert m.retries == 1
    assert q.in_flight_seconds() == (0.0, 0.0)
