"""Phase timings of one capture: recorded for the manifest, observed as metrics, traced as spans.

A capture is a span; each phase (queue wait, lease, wait for Ready, dump, rootfs diff, digest,
finalize) is a child span and one observation of the per-phase histogram. Phases that happened
before the capture span could start (the queue wait) are recorded with ``record``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from opentelemetry.trace import Span, Tracer

QUEUE_WAIT: Final = "queue_wait"
LEASE: Final = "lease"
WAIT_READY: Final = "wait_ready"
DUMP: Final = "dump"
ROOTFS_DIFF: Final = "rootfs_diff"
DIGEST: Final = "digest"
FINALIZE: Final = "finalize"
PHASE_NAMES: Final = (QUEUE_WAIT, LEASE, WAIT_READY, DUMP, ROOTFS_DIFF, DIGEST, FINALIZE)

Observer = Callable[[str, float], None]


class Phases:
    """Collects the phase durations of one capture (seconds, by phase name)."""

    def __init__(self, tracer: Tracer | None = None, observe: Observer | None = None) -> None:
        self._tracer = tracer
        self._observe = observe
        self.timings: dict[str, float] = {}

    def record(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        if self._observe is not None:
            self._observe(name, seconds)

    @contextmanager
    def phase(self, name: str) -> Iterator[Span | None]:
        start = time.monotonic()
        if self._tracer is None:
            try:
                yield None
            finally:
                self.record(name, time.monotonic() - start)
            return
        with self._tracer.start_as_current_span(f"capture.{name}") as span:
            try:
                yield span
            finally:
                self.record(name, time.monotonic() - start)
