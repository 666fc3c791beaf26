"""Backoff: how long to wait before trying again after a failure.

:class:`Backoff` is client-go's exponential backoff manager: delays start at ``initial`` and grow
by ``factor`` per consecutive failure up to ``maximum``; each delay gets up to ``jitter`` times
itself added at random so that many clients that failed together do not retry together. When no
failure has happened for ``reset_after`` seconds (a healthy period), the next delay starts from
``initial`` again. The reflector's defaults, 0.8 s → 30 s resetting after 2 minutes, are
client-go's.

The clock (:class:`~dynamo_snapshot.runtime.clock.Clock`) and the random source are injectable, so
tests run on a :class:`~dynamo_snapshot.runtime.clock.FakeClock` without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .clock import Clock, RealClock

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with jitter, reset after a healthy period. Not thread-safe."""

    def __init__(
        self,
        initial: float = 0.8,
        maximum: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or jitter < 0:
            raise ValueError("need 0 < initial <= maximum, factor >= 1, jitter >= 0")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.reset_after = reset_after
        self.clock: Clock = clock or RealClock()
        self._rand = rand
        self._base = initial
        # When the previous delay was handed out; None until the first failure.
        self._last: float | None = None

    def next_delay(self) -> float:
        """The delay to wait now, and advance the schedule."""
        now = self.clock.now()
        if self._last is not None and now - self._last > self.reset_after:
            # A healthy period: the previous failure is old news.
            self._base = self.initial
        self._last = now
        base = self._base
        self._base = min(self._base * self.factor, self.maximum)
        return min(self.maximum, base + base * self.jitter * self._rand())

    def reset(self) -> None:
        """Forget past failures: the next delay starts from ``initial``."""
        self._base = self.initial
        self._last = None

    async def sleep(self) -> float:
        """Wait ``next_delay()`` seconds; returns the delay waited."""
        delay = self.next_delay()
        await self.clock.sleep(delay)
        return delay
