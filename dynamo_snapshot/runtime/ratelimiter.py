"""Rate limiters: how long a failed item waits before it is tried again.

A rate limiter answers one question for the work queue, ``when(item)``: how many seconds from now
the item may be handed out again. It remembers failures per item until ``forget(item)`` is called
(after a success), and ``num_requeues(item)`` reports how many times in a row the item has failed.

Three limiters, as in client-go's ``workqueue`` package:

* :class:`ItemExponentialFailureRateLimiter`: per item, ``base * 2**failures``, capped. The
  controller default is 5 ms doubling to 1000 s, so a failing object is retried quickly at first
  and then about every 17 minutes, while other objects are unaffected.
* :class:`BucketRateLimiter`: one token bucket shared by all items (``qps`` tokens a second, at most
  ``burst`` saved up). It bounds the overall retry rate when many objects fail at once.
* :class:`MaxOfRateLimiter`: the longest wait any of its members asks for.

:func:`default_controller_rate_limiter` combines the first two exactly as controller-runtime does.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from .clock import Clock, RealClock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "default_controller_rate_limiter",
]


class RateLimiter(Protocol):
    """Decides the delay before an item's next retry."""

    def when(self, item: Hashable) -> float:
        """Record one more failure of ``item`` and return the seconds to wait before retrying."""
        ...

    def forget(self, item: Hashable) -> None:
        """Clear ``item``'s failure history (it succeeded, or it will not be retried)."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of ``item`` are on record."""
        ...


class ItemExponentialFailureRateLimiter:
    """``base * 2**n`` seconds after an item's n-th consecutive failure, at most ``max_delay``."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self._failures.get(item, 0)
        self._failures[item] = n + 1
        # Past 2**64 the delay is capped anyway; the bound keeps the float from overflowing after
        # a very long run of failures.
        return min(self.base_delay * 2.0 ** min(n, 64), self.max_delay)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket over all items: ``qps`` tokens a second, ``burst`` at most in hand.

    Every ``when`` takes a token, going into debt if none is left; the delay is the time until the
    debt is repaid. This is a reservation, like Go's ``rate.Limiter.Reserve``: callers that asked
    earlier are served earlier.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        now = self._clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, item: Hashable) -> None:
        """The bucket keeps no per-item state."""

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """Asks every member and waits for the longest of their answers."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        # Every member must see the failure, so no short-circuit here.
        return max([lim.when(item) for lim in self.limiters])

    def forget(self, item: Hashable) -> None:
        for lim in self.limiters:
            lim.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(lim.num_requeues(item) for lim in self.limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> RateLimiter:
    """controller-runtime's default: per item 5 ms .. 1000 s, overall 10 qps with a burst of 100."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=10.0, burst=100, clock=clock),
    )
