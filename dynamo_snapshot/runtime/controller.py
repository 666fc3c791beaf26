"""Controller: N workers that take keys from a work queue and reconcile them.

A :class:`Controller` owns one :class:`~dynamo_snapshot.runtime.workqueue.WorkQueue` of
:class:`~dynamo_snapshot.runtime.reconcile.Request` s. Informer events reach it through
:meth:`Controller.watches` (a handler maps each event to requests, predicates filter them first);
``max_concurrent_reconciles`` workers then loop: take a key, call the reconciler, act on the
outcome, mark the key done. The queue guarantees that no key is ever held by two workers at once,
and that events arriving during a reconcile cause exactly one more pass afterwards.

Outcomes (see :mod:`~dynamo_snapshot.runtime.reconcile`), as controller-runtime handles them:

=====================================  ===========================================  ============
the reconciler                          the key                                      ``result``
=====================================  ===========================================  ============
returns ``Result()`` / ``None``         forgotten (backoff reset)                    success
returns ``Result(requeue_after=s)``     forgotten, re-added after ``s`` seconds      requeue_after
returns ``Result(requeue=True)``        re-added after the rate limiter's backoff    requeue
raises ``TerminalError``                forgotten, not re-added                      error
raises anything else                    re-added after the rate limiter's backoff    error
=====================================  ===========================================  ============

Every failure is logged with the controller and object key and counted; the worker lives on.
Errors that in Go would be panics (``AttributeError``, ``TypeError``, ``IndexError``, ``KeyError``,
``AssertionError``, ...: programming mistakes rather than failed API calls) are also counted in
``controller_runtime_reconcile_panics_total``. Each reconcile runs in an OpenTelemetry span.

``stop()`` makes the controller stop taking keys; ``run()`` then returns once the reconciles in
flight have finished (the manager bounds that wait and cancels what is left).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
from opentelemetry.trace import NoOpTracer, Span, StatusCode, Tracer

from .clock import Clock, RealClock
from .handler import EventDispatcher, Handler
from .informer import EventHandler
from .metrics import ControllerMetrics, Metrics
from .predicate import Predicate
from .ratelimiter import RateLimiter
from .reader import View
from .reconcile import ReconcileFunc, Reconciler, Request, Result, TerminalError
from .tracing import SPAN_RECONCILE
from .workqueue import QueueShutDown, WorkQueue

__all__ = ["PANIC_TYPES", "Controller", "ReconcileTimeout", "Watchable"]

log = logging.getLogger(__name__)

PANIC_TYPES: tuple[type[BaseException], ...] = (
    AssertionError,
    AttributeError,
    IndexError,
    KeyError,
    NameError,
    NotImplementedError,
    RecursionError,
    TypeError,
    ZeroDivisionError,
)
"""Exceptions counted as panics: a bug in the reconciler, not a condition of the world."""


class ReconcileTimeout(TimeoutError):
    """A reconcile ran past the controller's ``reconcile_timeout`` and was cancelled."""


class Watchable(Protocol):
    """What a controller needs of an informer: a place to hang a handler, and sync status."""

    def add_event_handler(self, handler: EventHandler) -> None: ...

    def has_synced(self) -> bool: ...

    async def wait_for_sync(self, timeout: float) -> bool: ...


def _is_terminal(err: BaseException) -> bool:
    if isinstance(err, TerminalError):
        return True
    if isinstance(err, BaseExceptionGroup):
        # A task group inside the reconciler: terminal only if every failure in it is.
        _, rest = err.split(TerminalError)
        return rest is None
    return False


def _is_panic(err: BaseException) -> bool:
    if isinstance(err, BaseExceptionGroup):
        return err.subgroup(PANIC_TYPES) is not None
    return isinstance(err, PANIC_TYPES)


class Controller:
    """A named reconcile loop over one work queue. See the module docstring."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler | ReconcileFunc,
        *,
        max_concurrent_reconciles: int = 1,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
        need_leader_election: bool = True,
        cache_sync_timeout: float = 120.0,
        reconcile_timeout: float | None = None,
    ) -> None:
        if max_concurrent_reconciles < 1:
            raise ValueError("max_concurrent_reconciles must be at least 1")
        self.name = name
        rec = getattr(reconciler, "reconcile", None)
        self._reconcile: ReconcileFunc = rec if callable(rec) else reconciler  # type: ignore[assignment]
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.need_leader_election = need_leader_election
        self._clock = clock or RealClock()
        self._tracer: Tracer = tracer or NoOpTracer()
        self._cache_sync_timeout = cache_sync_timeout
        self.reconcile_timeout = reconcile_timeout
        self.queue: WorkQueue[Request] = WorkQueue(
            name, rate_limiter=rate_limiter, clock=self._clock
        )
        self._metrics: ControllerMetrics | None = None
        if metrics is not None:
            self._metrics = metrics.controller(name, max_concurrent_reconciles)
            self.queue.metrics = metrics.workqueue(name, self.queue.in_flight_seconds)
        self._watched: list[Watchable] = []
        self.for_view: View | None = None
        """The view of the For resource the builder watches: name it in reads
        (``client.get(..., view=ctl.for_view)``) when it is filtered."""
        self._stopping = False
        self._started = False
        self.active_workers = 0

    def __repr__(self) -> str:
        return f"Controller({self.name!r})"

    def watches(
        self, informer: Watchable, handler: Handler, predicates: Sequence[Predicate] = ()
    ) -> None:
        """Enqueue ``handler``'s requests for every event of ``informer`` that passes
        ``predicates``. Keys queue up from the first event; workers start with :meth:`run`."""
        informer.add_event_handler(EventDispatcher(handler, self.queue, predicates, name=self.name))
        self._watched.append(informer)

    def stop(self) -> None:
        """Stop taking keys; reconciles in flight finish and :meth:`run` returns."""
        self._stopping = True
        self.queue.shut_down()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        """Wait for the watched informers to sync, then run the workers until :meth:`stop`."""
        if self._started:
            raise RuntimeError(f"controller {self.name} was already started")
        self._started = True
        for informer in self._watched:
            if not await informer.wait_for_sync(self._cache_sync_timeout):
                raise TimeoutError(
                    f"controller {self.name}: timed out after {self._cache_sync_timeout:g}s "
                    f"waiting for {informer} to sync (is list/watch allowed by RBAC?)"
                )
        log.info(
            "starting workers",
            extra={"controller": self.name, "workers": self.max_concurrent_reconciles},
        )
        async with anyio.create_task_group() as tg:
            for i in range(self.max_concurrent_reconciles):
                tg.start_soon(self._worker, name=f"{self.name} worker {i}")
        log.info("workers stopped", extra={"controller": self.name})

    async def _worker(self) -> None:
        while True:
            try:
                req = await self.queue.get()
            except QueueShutDown:
                return
            try:
                if self._stopping:
                    return  # shutting down: leave the rest for the next leader
                self.active_workers += 1
                if self._metrics:
                    self._metrics.active_workers.inc()
                try:
                    await self._handle(req)
                finally:
                    self.active_workers -= 1
                    if self._metrics:
                        self._metrics.active_workers.dec()
            finally:
                self.queue.done(req)

    async def _handle(self, req: Request) -> None:
        start = self._clock.now()
        attributes: dict[str, Any] = {
            "controller": self.name,
            "key": req.key,
            "namespace": req.namespace,
            "name": req.name,
        }
        with self._tracer.start_as_current_span(
            SPAN_RECONCILE,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            outcome = await self._reconcile_once(req, span)
            span.set_attribute("result", outcome)
        if self._metrics:
            self._metrics.time.observe(self._clock.now() - start)
            self._metrics.total[outcome].inc()

    async def _call_reconciler(self, req: Request) -> Result | None:
        if self.reconcile_timeout is None:
            return await self._reconcile(req)
        with anyio.move_on_after(self.reconcile_timeout) as scope:
            return await self._reconcile(req)
        # The reconciler was cancelled at its deadline: an error, retried with backoff.
        assert scope.cancelled_caught
        if self._metrics:
            self._metrics.timeouts.inc()
        raise ReconcileTimeout(
            f"reconcile {req.key} did not finish within {self.reconcile_timeout:g}s"
        )

    async def _reconcile_once(self, req: Request, span: Span) -> str:
        extra = {"controller": self.name, "key": req.key}
        try:
            result = await self._call_reconciler(req)
        except Exception as err:
            span.record_exception(err)
            span.set_status(StatusCode.ERROR, str(err))
            if self._metrics:
                self._metrics.errors.inc()
            if _is_terminal(err):
                if self._metrics:
                    self._metrics.terminal_errors.inc()
                log.error(
                    "reconcile %s failed terminally, not retrying: %s",
                    req.key, err, exc_info=err, extra=extra,
                )  # fmt: skip
                self.queue.forget(req)
                return "error"
            if _is_panic(err) and self._metrics:
                self._metrics.panics.inc()
            log.error(
                "reconcile %s failed (retry %d): %s",
                req.key, self.queue.num_requeues(req) + 1, err, exc_info=err, extra=extra,
            )  # fmt: skip
            self.queue.add_rate_limited(req)
            return "error"
        if result is None:
            result = Result()
        if result.requeue_after:
            self.queue.forget(req)
            self.queue.add_after(req, result.requeue_after)
            # controller-runtime counts a requeue_after in workqueue_retries_total too.
            if self.queue.metrics is not None:
                self.queue.metrics.retried()
            return "requeue_after"
        if result.requeue:
            self.queue.add_rate_limited(req)
            return "requeue"
        self.queue.forget(req)
        return "success"
