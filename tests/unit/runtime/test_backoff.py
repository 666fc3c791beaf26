"""Backoff: exponential growth with jitter, a cap, and a reset after a healthy period."""

from __future__ import annotations

import anyio
import pytest

from dynamo_snapshot.runtime.backoff import Backoff
from dynamo_snapshot.runtime.clock import FakeClock


def test_grows_by_factor_up_to_the_cap_without_jitter() -> None:
    clock = FakeClock()
    b = Backoff(0.8, 30.0, jitter=0.0, clock=clock)
    delays = [b.next_delay() for _ in range(8)]
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])


def test_jitter_adds_up_to_factor_times_the_delay_and_never_passes_the_cap() -> None:
    clock = FakeClock()
    high = Backoff(0.8, 30.0, jitter=1.0, clock=clock, rand=lambda: 0.999)
    low = Backoff(0.8, 30.0, jitter=1.0, clock=clock, rand=lambda: 0.0)
    hi = [high.next_delay() for _ in range(8)]
    lo = [low.next_delay() for _ in range(8)]
    assert lo[0] == pytest.approx(0.8)
    assert hi[0] == pytest.approx(1.6, rel=1e-2)
    assert all(h >= low_ for h, low_ in zip(hi, lo, strict=True))
    assert max(hi) <= 30.0
    assert hi[-1] == pytest.approx(30.0)


def test_resets_after_a_healthy_period() -> None:
    clock = FakeClock()
    b = Backoff(1.0, 30.0, jitter=0.0, reset_after=120.0, clock=clock)
    assert [b.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    clock.advance(119.0)
    # Not yet healthy long enough: the schedule continues.
    assert b.next_delay() == 16.0
    clock.advance(120.5)
    assert b.next_delay() == 1.0
    assert b.next_delay() == 2.0


def test_reset_forgets_failures() -> None:
    b = Backoff(0.5, 10.0, jitter=0.0, clock=FakeClock())
    b.next_delay()
    b.next_delay()
    b.reset()
    assert b.next_delay() == 0.5


def test_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError, match="initial"):
        Backoff(2.0, 1.0)


async def test_sleep_waits_on_the_injected_clock() -> None:
    clock = FakeClock()
    b = Backoff(4.0, 30.0, jitter=0.0, clock=clock)
    done: list[float] = []

    async def sleeper() -> None:
        done.append(await b.sleep())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await anyio.wait_all_tasks_blocked()
        assert clock.pending_timers == 1
        clock.advance(3.9)
        await anyio.wait_all_tasks_blocked()
        assert done == []
        clock.advance(0.2)
    assert done == [4.0]
