"""Rate limiters, driven by a fake clock."""

from __future__ import annotations

import itertools

import pytest

from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.ratelimiter import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


def test_exponential_doubles_per_item_and_caps() -> None:
    rl = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    delays = [rl.when("a") for _ in range(20)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[-1] == 1000.0
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert rl.num_requeues("a") == 20
    # Another item is unaffected.
    assert rl.when("b") == pytest.approx(0.005)
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == pytest.approx(0.005)


def test_exponential_survives_huge_failure_counts() -> None:
    rl = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    for _ in range(5000):
        d = rl.when("x")
    assert d == 1000.0


def test_bucket_allows_burst_then_spaces_by_qps() -> None:
    clock = FakeClock()
    rl = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [rl.when(i) for i in range(3)] == [0, 0, 0]
    assert rl.when(3) == pytest.approx(0.1)
    assert rl.when(4) == pytest.approx(0.2)
    clock.advance(1.0)  # repays the debt of 2 and refills, but never above the burst
    assert [rl.when(i) for i in range(3)] == [0, 0, 0]
    assert rl.when(9) == pytest.approx(0.1)
    assert rl.num_requeues(9) == 0


def test_max_of_takes_longest_and_forgets_everywhere() -> None:
    clock = FakeClock()
    rl = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(qps=1, burst=1, clock=clock),
    )
    assert rl.when("a") == pytest.approx(0.005)  # bucket had a token
    assert rl.when("a") == pytest.approx(1.0)  # bucket in debt dominates
    assert rl.num_requeues("a") == 2
    rl.forget("a")
    assert rl.num_requeues("a") == 0


def test_default_controller_limiter_matches_controller_runtime() -> None:
    clock = FakeClock()
    rl = default_controller_rate_limiter(clock)
    # The first 100 failures across items ride the burst; the per-item curve shows.
    assert rl.when("k") == pytest.approx(0.005)
    assert rl.when("k") == pytest.approx(0.01)
    for i in range(98):
        rl.when(i)
    # The bucket (10 qps, burst 100) is now empty: the next failure of a fresh item waits 0.1 s.
    assert rl.when("fresh") == pytest.approx(0.1)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        ItemExponentialFailureRateLimiter(0, 1)
    with pytest.raises(ValueError, match="qps"):
        BucketRateLimiter(qps=0)
    with pytest.raises(ValueError, match="at least one"):
        MaxOfRateLimiter()
