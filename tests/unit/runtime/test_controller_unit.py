"""The controller's reconcile loop, without a cluster: a hand-driven informer stand-in feeds it
events and a fake clock drives its backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.controller import Controller
from dynamo_snapshot.runtime.handler import EnqueueRequestForObject, EnqueueRequestForOwner
from dynamo_snapshot.runtime.informer import DeletedFinalStateUnknown, EventHandler
from dynamo_snapshot.runtime.metrics import Metrics
from dynamo_snapshot.runtime.predicate import generation_changed
from dynamo_snapshot.runtime.ratelimiter import ItemExponentialFailureRateLimiter
from dynamo_snapshot.runtime.reconcile import Request, Result, TerminalError
from dynamo_snapshot.runtime.resource import CONFIGMAPS, JOBS
from tests.support import wait_for


class HandDrivenInformer:
    """Stands in for a SharedInformer: the test calls its handlers directly."""

    def __init__(self) -> None:
        self.handlers: list[EventHandler] = []

    def add_event_handler(self, handler: EventHandler) -> None:
        self.handlers.append(handler)

    def has_synced(self) -> bool:
        return True

    async def wait_for_sync(self, timeout: float) -> bool:
        return True

    def add(self, obj: dict[str, Any]) -> None:
        for h in self.handlers:
            h.on_add(obj)

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for h in self.handlers:
            h.on_update(old, new)

    def delete(self, obj: Any) -> None:
        for h in self.handlers:
            h.on_delete(obj)


def cm(name: str, ns: str = "ns", generation: int = 1, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "generation": generation, **meta}}


def sample(metrics: Metrics, metric: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(metric, labels)
    return 0.0 if value is None else value


class Harness:
    def __init__(self, reconcile: Callable[[Request], Any], workers: int = 1, **kw: Any) -> None:
        self.clock = FakeClock()
        self.metrics = Metrics(CollectorRegistry(), process=False)
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.informer = HandDrivenInformer()
        self.controller = Controller(
            "test",
            reconcile,
            max_concurrent_reconciles=workers,
            rate_limiter=ItemExponentialFailureRateLimiter(0.005, 1000.0),
            clock=self.clock,
            metrics=self.metrics,
            tracer=provider.get_tracer("test"),
            **kw,
        )
        self.controller.watches(self.informer, EnqueueRequestForObject())

    def total(self, result: str) -> float:
        return sample(
            self.metrics, "controller_runtime_reconcile_total", controller="test", result=result
        )


async def settle() -> None:
    await anyio.wait_all_tasks_blocked()


async def test_success_reconciles_once_per_burst_and_records_everything() -> None:
    seen: list[Request] = []

    async def reconcile(req: Request) -> None:
        seen.append(req)

    h = Harness(reconcile)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        for g in range(5):
            h.informer.add(cm("a", generation=g))
        h.informer.add(cm("b"))
        await settle()
        h.controller.stop()
    assert seen == [Request("ns", "a"), Request("ns", "b")]
    assert h.total("success") == 2
    m = h.metrics
    assert sample(m, "controller_runtime_max_concurrent_reconciles", controller="test") == 1
    assert sample(m, "controller_runtime_reconcile_time_seconds_count", controller="test") == 2
    assert sample(m, "workqueue_adds_total", name="test", controller="test") == 2
    spans = h.exporter.get_finished_spans()
    assert [s.attributes["key"] for s in spans if s.attributes] == ["ns/a", "ns/b"]
    assert all(s.attributes and s.attributes["result"] == "success" for s in spans)
    assert all(s.attributes and s.attributes["controller"] == "test" for s in spans)


async def test_errors_retry_with_growing_backoff_and_never_kill_the_worker() -> None:
    calls = 0

    async def reconcile(req: Request) -> Result:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise RuntimeError(f"boom {calls}")
        return Result()

    h = Harness(reconcile)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        h.informer.add(cm("a"))
        await settle()
        assert calls == 1
        for delay, expected_calls in [(0.005, 2), (0.01, 3), (0.02, 4)]:
            h.clock.advance(delay * 0.99)
            await settle()
            assert calls == expected_calls - 1, "retried before its backoff passed"
            h.clock.advance(delay * 0.02)
            await settle()
            assert calls == expected_calls
        assert h.controller.queue.num_requeues(Request("ns", "a")) == 0  # forgotten on success
        h.controller.stop()
    assert h.total("error") == 3
    assert h.total("success") == 1
    assert sample(h.metrics, "controller_runtime_reconcile_errors_total", controller="test") == 3
    assert sample(h.metrics, "workqueue_retries_total", name="test", controller="test") == 3
    assert sample(h.metrics, "controller_runtime_reconcile_panics_total", controller="test") == 0


async def test_terminal_error_is_not_retried() -> None:
    calls = 0

    async def reconcile(req: Request) -> Result:
        nonlocal calls
        calls += 1
        raise TerminalError("spec is invalid")

    h = Harness(reconcile)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        h.informer.add(cm("a"))
        await settle()
        h.clock.advance(2000)
        await settle()
        assert calls == 1
        # A new event reconciles it again.
        h.informer.update(cm("a"), cm("a", generation=2))
        await settle()
        assert calls == 2
        h.controller.stop()
    m = h.metrics
    assert sample(m, "controller_runtime_terminal_reconcile_errors_total", controller="test") == 2
    assert sample(m, "controller_runtime_reconcile_errors_total", controller="test") == 2
    assert sample(m, "workqueue_retries_total", name="test", controller="test") == 0
    assert h.exporter.get_finished_spans()[0].status.status_code.name == "ERROR"


async def test_panic_is_counted_and_retried() -> None:
    calls = 0

    async def reconcile(req: Request) -> Result:
        nonlocal calls
        calls += 1
        if calls == 1:
            return None.missing  # type: ignore[attr-defined, no-any-return]
        return Result()

    h = Harness(reconcile)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        h.informer.add(cm("a"))
        await settle()
        h.clock.advance(0.005)
        await settle()
        h.controller.stop()
    assert calls == 2
    assert sample(h.metrics, "controller_runtime_reconcile_panics_total", controller="test") == 1


async def test_requeue_after_and_requeue() -> None:
    calls: list[float] = []

    async def reconcile(req: Request) -> Result:
        calls.append(h.clock.now())
        if len(calls) == 1:
            return Result(requeue_after=30)
        if len(calls) == 2:
            return Result(requeue=True)
        return Result()

    h = Harness(reconcile)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        h.informer.add(cm("a"))
        await settle()
        h.clock.advance(29.9)
        await settle()
        assert len(calls) == 1
        h.clock.advance(0.1)
        await settle()
        assert len(calls) == 2
        h.clock.advance(0.005)
        await settle()
        assert len(calls) == 3
        h.controller.stop()
    assert h.total("requeue_after") == 1
    assert h.total("requeue") == 1
    assert h.total("success") == 1
    # controller-runtime counts both kinds of requeue as retries.
    assert sample(h.metrics, "workqueue_retries_total", name="test", controller="test") == 2


async def test_a_reconcile_past_its_timeout_is_cancelled_counted_and_retried() -> None:
    calls = 0

    async def reconcile(req: Request) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep_forever()  # hangs: cancelled at the timeout

    h = Harness(reconcile, reconcile_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        h.informer.add(cm("a"))
        timeouts = "controller_runtime_reconcile_timeouts_total"
        await wait_for(lambda: sample(h.metrics, timeouts, controller="test"), 5, "the timeout")
        h.clock.advance(0.005)  # the retry's backoff
        await settle()
        h.controller.stop()
    assert calls == 2
    assert h.total("error") == 1
    assert h.total("success") == 1
    depth = {"name": "test", "controller": "test", "priority": ""}
    assert h.metrics.registry.get_sample_value("workqueue_depth", depth) == 0.0


async def test_workers_never_share_a_key_and_run_in_parallel() -> None:
    holding: set[Request] = set()
    violations: list[Request] = []  # recorded, asserted after the run (see COMMON.md)
    max_parallel = 0
    gates: dict[str, anyio.Event] = {}

    async def reconcile(req: Request) -> None:
        nonlocal max_parallel
        if req in holding:
            violations.append(req)  # an assert here would be caught by the controller
        holding.add(req)
        max_parallel = max(max_parallel, len(holding))
        gates.setdefault(req.name, anyio.Event())
        await gates[req.name].wait()
        gates.pop(req.name)
        holding.discard(req)

    h = Harness(reconcile, workers=3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        for name in ["a", "b", "a", "a"]:
            h.informer.add(cm(name))
        await settle()
        assert holding == {Request("ns", "a"), Request("ns", "b")}
        assert h.controller.active_workers == 2
        h.informer.add(cm("a"))  # while "a" is held: queued again after it is done
        await settle()
        gates["a"].set()
        await settle()
        assert Request("ns", "a") in holding  # the second pass
        gates["a"].set()
        gates["b"].set()
        await settle()
        h.controller.stop()
    assert violations == [], "two workers held the same key"
    assert max_parallel == 2
    assert h.total("success") == 3
    assert h.total("error") == 0


async def test_stop_lets_in_flight_reconcile_finish_and_takes_no_more() -> None:
    started = anyio.Event()
    release = anyio.Event()
    finished: list[str] = []

    async def reconcile(req: Request) -> None:
        started.set()
        await release.wait()
        finished.append(req.name)

    h = Harness(reconcile)
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        h.informer.add(cm("a"))
        h.informer.add(cm("b"))
        await started.wait()
        h.controller.stop()
        release.set()
    assert finished == ["a"]


async def test_predicates_and_owner_handler() -> None:
    seen: list[Request] = []

    async def reconcile(req: Request) -> None:
        seen.append(req)

    h = Harness(reconcile)
    jobs = HandDrivenInformer()
    h.controller.watches(jobs, EnqueueRequestForOwner(CONFIGMAPS), [generation_changed()])
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "controller": True}
    other_ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "x", "controller": True}
    async with anyio.create_task_group() as tg:
        tg.start_soon(h.controller.run)
        await settle()
        job = cm("job", ownerReferences=[owner_ref])
        jobs.update(job, job)  # same generation: filtered
        jobs.add(cm("orphan"))
        jobs.add(cm("other", ownerReferences=[other_ref]))
        await settle()
        assert seen == []
        jobs.delete(DeletedFinalStateUnknown("ns/job", job))
        await settle()
        h.controller.stop()
    assert seen == [Request("ns", "owner")]
    assert JOBS.kind == "Job"


async def test_broken_map_function_does_not_break_the_informer() -> None:
    h = Harness(lambda req: None)

    class Broken:
        def requests(self, obj: Any) -> Any:
            raise ValueError("bad map")

    informer = HandDrivenInformer()
    h.controller.watches(informer, Broken())
    informer.add(cm("a"))  # logged, not raised
    assert len(h.controller.queue) == 0


def test_invalid_worker_count() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Controller("x", lambda req: None, max_concurrent_reconciles=0)  # type: ignore[arg-type, return-value]
