"""Work queue: the list of keys a controller still has to reconcile.

The queue holds keys (not objects), so ten events for one object before a worker gets to it become
one item: a worker always reads the latest state from the cache, never a stale event. It follows
client-go's ``workqueue`` semantics:

* **Deduplicating.** A key waiting in the queue is kept once (the *dirty* set).
* **Never two workers on one key.** A key handed out by :meth:`WorkQueue.get` is in the
  *processing* set until :meth:`WorkQueue.done`. Adding it meanwhile marks it dirty without
  queueing it; ``done`` then puts it back, so the change made during processing is not lost and is
  handled after the current pass, by one worker.
* **Delaying.** :meth:`WorkQueue.add_after` adds the key once a delay has passed (the earlier
  deadline wins when it is delayed twice).
* **Rate-limited.** :meth:`WorkQueue.add_rate_limited` asks the :mod:`ratelimiter` how long the
  key must wait after one more failure; :meth:`WorkQueue.forget` clears that history after a
  success, and :meth:`WorkQueue.num_requeues` reports it.
* **Shutdown.** After :meth:`WorkQueue.shut_down` adds are ignored, delayed keys are dropped and
  ``get`` hands out what is already queued and then raises :class:`QueueShutDown`.
  :meth:`WorkQueue.shut_down_with_drain` also waits until every handed-out key is ``done``.

``get`` is a coroutine; everything else is synchronous and cheap, so an informer callback can add
keys without ever blocking. The queue is for one event loop (no threads).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

import anyio

from .clock import Clock, RealClock
from .ratelimiter import RateLimiter, default_controller_rate_limiter

__all__ = ["QueueMetrics", "QueueShutDown", "WorkQueue"]

T = TypeVar("T", bound=Hashable)


class QueueShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and empty."""


class QueueMetrics(Protocol):
    """Where a queue reports what it does (see ``metrics.py`` for the Prometheus one)."""

    def added(self) -> None:
        """A key entered the queue (a duplicate add does not count)."""
        ...

    def depth(self, n: int) -> None:
        """The number of keys now waiting to be handed out."""
        ...

    def handed_out(self, queued_seconds: float) -> None:
        """A worker took a key that had waited ``queued_seconds``."""
        ...

    def finished(self, work_seconds: float) -> None:
        """A worker finished a key it held for ``work_seconds``."""
        ...

    def retried(self) -> None:
        """A key was re-added through the rate limiter."""
        ...


class WorkQueue(Generic[T]):
    """A deduplicating, delaying, rate-limited queue of hashable keys (see the module docstring)."""

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self.name = name
        self._clock = clock or RealClock()
        self._limiter = rate_limiter or default_controller_rate_limiter(self._clock)
        # Public so an owner can attach metrics that read this queue's state (in_flight_seconds).
        self.metrics = metrics
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        # When each dirty key was added (queue latency) and each processing key was taken (work
        # duration, and the unfinished-work gauges read at scrape time).
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        # Delayed keys: a heap of (ready_at, seq, key) plus the live deadline of each key; a heap
        # entry whose deadline no longer matches is stale and skipped.
        self._delayed: list[tuple[float, int, T]] = []
        self._ready_at: dict[T, float] = {}
        self._seq = itertools.count()
        # Each blocked get() parks on its own event; an add wakes exactly one of them.
        self._waiters: deque[anyio.Event] = deque()
        self._idle: anyio.Event | None = None
        self._shutting_down = False

    # -- inspection -------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out (not counting delayed or processing ones)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing(self) -> int:
        """How many keys workers hold right now."""
        return len(self._processing)

    @property
    def delayed(self) -> int:
        """How many keys wait for a delay to pass."""
        return len(self._ready_at)

    def in_flight_seconds(self) -> tuple[float, float]:
        """(total, longest) seconds that keys now being processed have been held."""
        if not self._started_at:
            return 0.0, 0.0
        now = self._clock.now()
        ages = [now - t for t in self._started_at.values()]
        return sum(ages), max(ages)

    # -- the core queue ---------------------------------------------------------------------

    def add(self, item: T) -> None:
        """Queue ``item`` unless it is already waiting; if it is being processed, mark it dirty."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        self._added_at[item] = self._clock.now()
        if self.metrics:
            self.metrics.added()
        if item in self._processing:
            return  # re-queued by done()
        self._push(item)

    def _push(self, item: T) -> None:
        self._queue.append(item)
        if self.metrics:
            self.metrics.depth(len(self._queue))
        self._wake_one()

    async def get(self) -> T:
        """Wait for a key and take it; raises :class:`QueueShutDown` when shut down and empty."""
        while True:
            self._promote_due()
            if self._queue:
                return self._take()
            if self._shutting_down:
                raise QueueShutDown(self.name)
            waiter = anyio.Event()
            self._waiters.append(waiter)
            try:
                await self._clock.wait(waiter, self._next_delay())
            except BaseException:
                # Cancelled after being chosen to take a key: pass the wake-up on, or the key
                # would sit in the queue with a worker idle.
                if waiter.is_set():
                    self._wake_one()
                raise
            finally:
                if not waiter.is_set():
                    self._waiters.remove(waiter)

    def _take(self) -> T:
        item = self._queue.popleft()
        now = self._clock.now()
        self._processing.add(item)
        self._dirty.discard(item)
        self._started_at[item] = now
        added = self._added_at.pop(item, now)
        if self.metrics:
            self.metrics.depth(len(self._queue))
            self.metrics.handed_out(now - added)
        return item

    def done(self, item: T) -> None:
        """The worker is finished with ``item``; re-queue it if it was added meanwhile."""
        if item not in self._processing:
            return
        self._processing.discard(item)
        started = self._started_at.pop(item, None)
        if self.metrics and started is not None:
            self.metrics.finished(self._clock.now() - started)
        if item in self._dirty:
            self._push(item)
        elif not self._processing and self._idle is not None:
            self._idle.set()

    def shut_down(self) -> None:
        """Stop accepting keys; ``get`` drains what is queued and then raises QueueShutDown."""
        self._shutting_down = True
        self._delayed.clear()
        self._ready_at.clear()
        while self._waiters:
            self._waiters.popleft().set()

    async def shut_down_with_drain(self) -> None:
        """:meth:`shut_down`, then wait until every handed-out key is ``done``."""
        self.shut_down()
        if self._processing:
            self._idle = anyio.Event()
            await self._idle.wait()

    def _wake_one(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()

    # -- delaying ---------------------------------------------------------------------------

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` once ``delay`` seconds have passed (at once if ``delay <= 0``)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.now() + delay
        current = self._ready_at.get(item)
        if current is not None and current <= ready_at:
            return  # already due earlier
        self._ready_at[item] = ready_at
        heapq.heappush(self._delayed, (ready_at, next(self._seq), item))
        # A blocked get() computed its timeout from the old earliest deadline; let one recompute.
        if self._delayed[0][2] == item:
            self._wake_one()

    def _promote_due(self) -> None:
        now = self._clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            ready_at, _, item = heapq.heappop(self._delayed)
            if self._ready_at.get(item) != ready_at:
                continue  # superseded by an earlier deadline
            del self._ready_at[item]
            self.add(item)

    def _next_delay(self) -> float | None:
        while self._delayed:
            ready_at, _, item = self._delayed[0]
            if self._ready_at.get(item) == ready_at:
                return max(0.0, ready_at - self._clock.now())
            heapq.heappop(self._delayed)
        return None

    # -- rate limiting ----------------------------------------------------------------------

    def add_rate_limited(self, item: T) -> None:
        """Add ``item`` after the delay its rate limiter asks for (one more failure recorded)."""
        if self._shutting_down:
            return
        if self.metrics:
            self.metrics.retried()
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: T) -> None:
        """Clear ``item``'s failure history: its next failure backs off from the start."""
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)
