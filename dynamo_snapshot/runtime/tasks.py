"""Long work per key: background tasks that do not hold a worker, and the channel that brings
their key back to the controller when they finish.

A reconcile must return quickly: it holds one of the controller's few workers, and the key cannot
be reconciled again while it runs. Work that takes seconds to minutes (a container checkpoint)
runs instead as a :class:`BackgroundTasks` task keyed by the request:

::

    tasks = BackgroundTasks("capture", grace_period=30)
    ControllerBuilder(mgr).for_(CHECKPOINTS).with_background_tasks(tasks).complete(reconcile)

    async def reconcile(req):
        done = tasks.pop_result(req)            # a finished run's outcome, once
        if done is not None:
            ...                                 # write status from done.value / done.error
        elif not tasks.running(req):
            tasks.start(req, lambda ctx: capture(ctx, req))

* ``start`` returns at once; the task runs in the ``BackgroundTasks`` runnable's own task group.
  One task per key: ``start`` while one runs returns False and starts nothing.
* When the task ends (value, exception or cancellation) its :class:`TaskOutcome` is kept for
  ``pop_result`` and the key is sent through :attr:`BackgroundTasks.channel`, which the builder
  connects to the controller's queue: the next reconcile sees the outcome.
* ``cancel(req)`` (called by the builder's hook when the For object is deleted) and the manager's
  shutdown cancel tasks *with a grace period*: ``ctx.cancelling`` is set at once, so the task can
  stop cleanly; after ``grace_period`` seconds it is cancelled outright.

:class:`Channel` is the generic source (controller-runtime's ``source.Channel``): anything may
``send(request)`` and every subscribed controller queue receives it; what is sent before a
controller subscribes is kept and delivered on subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import attrs

from .clock import Clock, RealClock
from .reconcile import Request

__all__ = ["BackgroundTasks", "Channel", "TaskContext", "TaskOutcome"]

log = logging.getLogger(__name__)


class Channel:
    """Requests sent from outside the informers (see the module docstring). ``send`` never
    blocks."""

    def __init__(self, name: str = "channel", *, buffer: int = 10_000) -> None:
        self.name = name
        self._subscribers: list[Callable[[Request], None]] = []
        self._pending: list[Request] = []
        self._buffer = buffer
        self.dropped = 0

    def subscribe(self, deliver: Callable[[Request], None]) -> None:
        """Deliver every request (those already sent first) to ``deliver`` (a queue's ``add``)."""
        self._subscribers.append(deliver)
        pending, self._pending = self._pending, []
        for req in pending:
            self._fan_out(req)

    def send(self, request: Request) -> None:
        if not self._subscribers:
            if len(self._pending) >= self._buffer:
                self.dropped += 1
                log.warning("channel %s: buffer full, dropping %s", self.name, request)
                return
            self._pending.append(request)
            return
        self._fan_out(request)

    def _fan_out(self, request: Request) -> None:
        for deliver in tuple(self._subscribers):
            try:
                deliver(request)
            except Exception:
                log.exception("channel %s: delivering %s failed", self.name, request)


@attrs.frozen
class TaskOutcome:
    """How a task ended: ``value`` if it returned, ``error`` if it raised, ``cancelled`` if it
    was cancelled (by delete, ``cancel`` or shutdown)."""

    request: Request
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


@attrs.define
class TaskContext:
    """Given to the task function. ``cancelling`` is set when the task is asked to stop; it is
    cancelled outright ``grace_period`` seconds later."""

    request: Request
    cancelling: anyio.Event = attrs.field(factory=anyio.Event)

    @property
    def cancel_requested(self) -> bool:
        return self.cancelling.is_set()


TaskFunc = Callable[[TaskContext], Awaitable[Any]]


@attrs.define
class _Running:
    ctx: TaskContext
    scope: anyio.CancelScope
    fn: TaskFunc
    done: anyio.Event = attrs.field(factory=anyio.Event)


class BackgroundTasks:
    """Per-key background tasks, a manager runnable. See the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        grace_period: float = 30.0,
        need_leader_election: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.grace_period = grace_period
        self.need_leader_election = need_leader_election
        self.channel = Channel(f"{name} tasks")
        self._clock = clock or RealClock()
        self._running: dict[Request, _Running] = {}
        self._results: dict[Request, TaskOutcome] = {}
        self._backlog: list[Request] = []  # started before run() opened the task group
        self._tg: anyio.abc.TaskGroup | None = None
        self._stop: anyio.Event | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"BackgroundTasks({self.name!r})"

    # -- what a reconciler calls ------------------------------------------------------------

    def start(self, request: Request, fn: TaskFunc) -> bool:
        """Run ``fn(ctx)`` in the background for ``request``; False (nothing started) if a task
        for it is running or the manager is stopping. A finished, not yet popped outcome of an
        earlier run is discarded."""
        if self._stopping or request in self._running:
            return False
        self._results.pop(request, None)
        run = _Running(TaskContext(request), anyio.CancelScope(), fn)
        self._running[request] = run
        if self._tg is None:
            self._backlog.append(request)
        else:
            self._tg.start_soon(self._run_one, run, name=f"{self.name} {request}")
        return True

    def running(self, request: Request) -> bool:
        return request in self._running

    def pop_result(self, request: Request) -> TaskOutcome | None:
        """The outcome of the last finished run for ``request``, once (then forgotten)."""
        return self._results.pop(request, None)

    def cancel(self, request: Request) -> bool:
        """Ask the task for ``request`` to stop (grace period, then cancelled); True if one ran.
        Also forgets an outcome not yet popped (the object is gone)."""
        self._results.pop(request, None)
        run = self._running.get(request)
        if run is None:
            return False
        self._begin_cancel(run)
        return True

    def keys(self) -> list[Request]:
        return list(self._running)

    # -- the runnable -----------------------------------------------------------------------

    def _begin_cancel(self, run: _Running) -> None:
        if run.ctx.cancelling.is_set():
            return
        run.ctx.cancelling.set()
        if self.grace_period <= 0:
            run.scope.cancel()
        elif self._tg is not None:
            self._tg.start_soon(self._cancel_after_grace, run)
        else:
            run.scope.cancel()

    async def _cancel_after_grace(self, run: _Running) -> None:
        await self._clock.wait(run.done, self.grace_period)
        run.scope.cancel()

    async def _run_one(self, run: _Running) -> None:
        req = run.ctx.request
        outcome: TaskOutcome
        try:
            with run.scope:
                value = await run.fn(run.ctx)
                outcome = TaskOutcome(req, value=value)
            if run.scope.cancelled_caught:
                outcome = TaskOutcome(req, cancelled=True)
        except Exception as err:
            log.error("background task %s %s failed: %s", self.name, req, err, exc_info=err)
            outcome = TaskOutcome(req, error=err)
        finally:
            run.done.set()
            if self._running.get(req) is run:
                del self._running[req]
        if outcome.cancelled and run.ctx.cancelling.is_set():
            log.info("background task %s %s cancelled", self.name, req)
        if self._stopping:
            return  # the queue is shutting down; the next leader starts over
        self._results[req] = outcome
        self.channel.send(req)

    async def run(self) -> None:
        """Run the tasks until :meth:`stop`; then cancel each with its grace period and return
        once all have ended."""
        self._stop = anyio.Event()
        if self._stopping:
            self._stop.set()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            backlog, self._backlog = self._backlog, []
            for req in backlog:
                run = self._running.get(req)
                if run is not None:
                    tg.start_soon(self._run_one, run, name=f"{self.name} {req}")
            await self._stop.wait()
            for run in list(self._running.values()):
                self._begin_cancel(run)
            # The group waits for every task (each is cancelled at the latest after the grace).
        self._tg = None

    def stop(self) -> None:
        """Stop accepting tasks and cancel the running ones (with the grace period)."""
        self._stopping = True
        if self._stop is not None:
            self._stop.set()
