"""Clock: where the framework reads time and waits for it.

Everything time-driven in the framework (work queue delays, rate limiters, leader election, metrics
durations) asks a :class:`Clock` instead of calling ``time`` or ``anyio.sleep`` directly, so a test
can swap in :class:`FakeClock` and step time by hand: a 1000 s backoff is checked in microseconds,
and nothing in a unit test depends on the speed of the machine.

A clock has two readings: ``now()`` is monotonic seconds (for durations and deadlines) and
``wall()`` is the UTC date and time (for timestamps written to the API, such as a Lease's
``renewTime``). It has two ways to wait: ``sleep(seconds)``, and ``wait(event, timeout)``, which
returns ``True`` as soon as the event is set and ``False`` if the timeout passed first.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ["Clock", "FakeClock", "RealClock"]


class Clock(Protocol):
    """The time source every timed part of the framework takes in its constructor."""

    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...

    def wall(self) -> dt.datetime:
        """The current UTC time, timezone-aware."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (returns at once when ``seconds <= 0``)."""
        ...

    async def wait(self, event: anyio.Event, timeout: float | None) -> bool:
        """Wait for ``event`` at most ``timeout`` seconds (``None``: forever); ``True`` if set."""
        ...


class RealClock:
    """The clock of the running process: ``time.monotonic`` and anyio's timers."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    async def wait(self, event: anyio.Event, timeout: float | None) -> bool:
        if timeout is None:
            await event.wait()
            return True
        with anyio.move_on_after(max(0.0, timeout)):
            await event.wait()
        return event.is_set()


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Timers that fall due are fired by ``advance``; the woken tasks run at the test's next
    checkpoint (``await anyio.wait_all_tasks_blocked()`` lets all of them settle).
    """

    def __init__(self, start: float = 1000.0, wall_start: dt.datetime | None = None) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        # (deadline, sequence, event): the sequence keeps equal deadlines in arrival order and
        # stops heapq from ever comparing two Events.
        self._timers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> dt.datetime:
        return self._wall_start + dt.timedelta(seconds=self._now - self._start)

    @property
    def pending_timers(self) -> int:
        """How many sleeps and timed waits are parked on this clock (tests wait on it)."""
        return sum(1 for _, _, ev in self._timers if not ev.is_set())

    def advance(self, seconds: float) -> None:
        """Move time forward and fire every timer that is now due."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, ev = heapq.heappop(self._timers)
            ev.set()

    def _timer(self, deadline: float) -> anyio.Event:
        ev = anyio.Event()
        heapq.heappush(self._timers, (deadline, next(self._seq), ev))
        return ev

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        await self._timer(self._now + seconds).wait()

    async def wait(self, event: anyio.Event, timeout: float | None) -> bool:
        if event.is_set():
            return True
        if timeout is None:
            await event.wait()
            return True
        if timeout <= 0:
            return False
        timer = self._timer(self._now + timeout)
        try:
            # Whichever of the two events comes first cancels the other waiter.
            async with anyio.create_task_group() as tg:

                async def first(ev: anyio.Event) -> None:
                    await ev.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(first, event)
                tg.start_soon(first, timer)
        finally:
            # A timer nobody waits for any more is dropped so pending_timers stays truthful.
            timer.set()
        return event.is_set()
