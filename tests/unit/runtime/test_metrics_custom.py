"""Custom metrics live on the manager's served registry."""

from __future__ import annotations

import pytest
from prometheus_client import Counter, Histogram

from dynamo_snapshot.runtime import Metrics


def test_custom_metrics_are_served_and_shared_by_name() -> None:
    m = Metrics(process=False)
    c = m.counter("captures", "Captures done", ["result"])
    assert m.counter("captures", "again", ["result"]) is c
    c.labels("ok").inc(2)
    h = m.histogram("capture_seconds", "Capture time", buckets=(1, 10))
    h.observe(3)
    m.gauge("captures_running", "Running").set(4)
    body = m.exposition()[0].decode()
    assert 'captures_total{result="ok"} 2.0' in body
    assert 'capture_seconds_bucket{le="10.0"} 1.0' in body
    assert 'capture_seconds_bucket{le="1.0"} 0.0' in body
    assert "captures_running 4.0" in body
    with pytest.raises(ValueError, match="exists"):
        m.gauge("captures", "clash")
    with pytest.raises(ValueError, match="labels"):
        m.counter("captures", "clash", ["other"])


def test_module_level_metrics_do_not_appear() -> None:
    Counter("module_level_thing", "registered on the default registry")
    m = Metrics(process=False)
    assert b"module_level_thing" not in m.exposition()[0]
    assert isinstance(m.histogram("h", "h"), Histogram)
