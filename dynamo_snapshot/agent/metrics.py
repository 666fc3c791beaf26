"""The agent's capture metrics, on the manager's registry (served at /metrics with the framework's).

=================================================  ==================  =========
series                                             labels              type
=================================================  ==================  =========
``dynamo_snapshot_capture_duration_seconds``       method, result      histogram
``dynamo_snapshot_capture_phase_duration_seconds`` method, phase       histogram
``dynamo_snapshot_capture_bytes_written_total``    method              counter
``dynamo_snapshot_captures_in_flight``             (none)              gauge
``dynamo_snapshot_capture_failures_total``         reason              counter
=================================================  ==================  =========

``result`` is ``success`` or ``failure``; ``phase`` one of ``phases.PHASE_NAMES``.
"""

from __future__ import annotations

from typing import Final

from dynamo_snapshot.runtime import Metrics

# 10 ms .. about 20 min: small containers dump in a tenth of a second, 100 GiB ones in minutes.
BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000,
)  # fmt: skip


class CaptureMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.duration = metrics.histogram(
            "dynamo_snapshot_capture_duration_seconds",
            "Time from the start of a capture (target container Ready) to its end (Ready or "
            "Failed), by method and result; the wait for Ready is the wait_ready phase",
            ["method", "result"],
            buckets=BUCKETS,
        )
        self.phase = metrics.histogram(
            "dynamo_snapshot_capture_phase_duration_seconds",
            "Time spent in each phase of a capture (queue_wait, lease, wait_ready, dump, "
            "rootfs_diff, digest, finalize)",
            ["method", "phase"],
            buckets=BUCKETS,
        )
        self.bytes_written = metrics.counter(
            "dynamo_snapshot_capture_bytes_written",
            "Bytes of artifacts written (every file of every published artifact)",
            ["method"],
        )
        self.in_flight = metrics.gauge(
            "dynamo_snapshot_captures_in_flight", "Captures running on this agent now"
        )
        self.failures = metrics.counter(
            "dynamo_snapshot_capture_failures",
            "Contents this agent marked Failed, by SPEC reason",
            ["reason"],
        )
