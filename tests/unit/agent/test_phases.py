"""Phase timings: recorded for the manifest, observed as metrics, traced as child spans."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dynamo_snapshot.agent.phases import DUMP, FINALIZE, QUEUE_WAIT, Phases


def test_each_phase_is_a_child_span_of_the_capture_and_an_observation() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    observed: list[tuple[str, float]] = []
    phases = Phases(tracer, lambda p, s: observed.append((p, s)))
    with tracer.start_as_current_span("capture") as parent:
        phases.record(QUEUE_WAIT, 0.25)
        with phases.phase(DUMP):
            pass
        with pytest.raises(RuntimeError), phases.phase(FINALIZE):
            raise RuntimeError("boom")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"capture", "capture.dump", "capture.finalize"}
    for child in ("capture.dump", "capture.finalize"):
        ctx = spans[child].parent
        assert ctx is not None
        assert ctx.span_id == parent.get_span_context().span_id
    assert [p for p, _ in observed] == [QUEUE_WAIT, DUMP, FINALIZE]
    assert phases.timings[QUEUE_WAIT] == 0.25
    assert set(phases.timings) == {QUEUE_WAIT, DUMP, FINALIZE}
