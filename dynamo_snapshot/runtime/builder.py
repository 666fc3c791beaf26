"""Builder: wire a controller in one sentence.

::

    ControllerBuilder(manager)
        .named("checkpoint")
        .for_(CHECKPOINTS, predicates=[generation_changed()])
        .owns(JOBS)
        .watches(PODS, pods_to_checkpoints)
        .with_workers(4)
        .complete(CheckpointReconciler(manager.client, manager.cache))

reads as "for checkpoints (spec changes only), owning jobs, watching pods mapped by a function,
with four workers, reconciled by this". The builder asks the manager's cache for the shared
informers (so two controllers watching Pods share one watch), creates the
:class:`~dynamo_snapshot.runtime.controller.Controller` with the manager's metrics, tracer and
clock, hooks each informer to it through a handler and predicates, and adds it to the manager.

* ``for_``: the reconciled kind; each event enqueues the object itself.
* ``owns``: objects this controller creates; each event enqueues the owner of the *For* kind named
  by the object's controlling ownerReference.
* ``watches``: anything else; a map function (or any handler) says which requests an object
  stands for.
* ``with_event_filter``: predicates applied to every watch of the controller.

Each watch takes its own ``predicates``, ``namespace`` and ``label_selector``; by default it sees
the manager's namespaces (all unless the manager is restricted to some). When the manager is
restricted, requests that a watch maps to a namespace outside its set are dropped: this
controller cannot read those objects, another instance owns them (a cluster-scoped kind, for
instance, may map to any namespace).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Self

import attrs

from .controller import Controller
from .handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    Handler,
    MapFunc,
)
from .informer import DeletedFinalStateUnknown, object_of
from .manager import Manager
from .objects import Obj, meta
from .predicate import Predicate
from .ratelimiter import RateLimiter
from .reader import View
from .reconcile import ReconcileFunc, Reconciler, Request
from .resource import Resource
from .tasks import BackgroundTasks, Channel

__all__ = ["ControllerBuilder"]


@attrs.frozen
class _Watch:
    resource: Resource
    handler: Handler
    predicates: tuple[Predicate, ...]
    namespace: str | frozenset[str] | None
    label_selector: str | None
    field_selector: str | None


class ControllerBuilder:
    """Fluent wiring of one controller into a manager. See the module docstring."""

    def __init__(self, manager: Manager) -> None:
        self._mgr = manager
        self._name: str | None = None
        self._for: Resource | None = None
        self._watches: list[_Watch] = []
        self._filters: list[Predicate] = []
        self._workers = 1
        self._rate_limiter: RateLimiter | None = None
        self._need_leader_election = True
        self._channels: list[Channel] = []
        self._reconcile_timeout: float | None = None
        self._tasks: list[BackgroundTasks] = []

    def named(self, name: str) -> Self:
        """The controller's name in logs, metrics and spans (default: the For kind, lowercase)."""
        self._name = name
        return self

    def _watch(
        self,
        resource: Resource,
        handler: Handler,
        predicates: Sequence[Predicate],
        namespace: str | Collection[str] | None,
        label_selector: str | None,
        field_selector: str | None,
    ) -> None:
        self._watches.append(
            _Watch(
                resource,
                handler,
                tuple(predicates),
                # None: the cache's namespaces (the manager's).
                namespace
                if namespace is None or isinstance(namespace, str)
                else frozenset(namespace),
                label_selector,
                field_selector,
            )
        )

    def for_(
        self,
        resource: Resource,
        *,
        predicates: Sequence[Predicate] = (),
        namespace: str | Collection[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Self:
        """Reconcile objects of ``resource``; their own events enqueue them."""
        if self._for is not None:
            raise ValueError(f"for_ was already called with {self._for}")
        self._for = resource
        self._watch(
            resource,
            EnqueueRequestForObject(),
            predicates,
            namespace,
            label_selector,
            field_selector,
        )
        return self

    def owns(
        self,
        resource: Resource,
        *,
        predicates: Sequence[Predicate] = (),
        namespace: str | Collection[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Self:
        """Objects of ``resource`` controlled by a For object enqueue that owner."""
        if self._for is None:
            raise ValueError("call for_ before owns: the owner kind comes from it")
        self._watch(
            resource,
            EnqueueRequestForOwner(self._for),
            predicates,
            namespace,
            label_selector,
            field_selector,
        )
        return self

    def watches(
        self,
        resource: Resource,
        map_fn: MapFunc | Handler,
        *,
        predicates: Sequence[Predicate] = (),
        namespace: str | Collection[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Self:
        """Objects of ``resource`` enqueue whatever ``map_fn(obj)`` returns."""
        handler: Handler = (
            map_fn if hasattr(map_fn, "requests") else EnqueueRequestsFromMapFunc(map_fn)
        )
        self._watch(resource, handler, predicates, namespace, label_selector, field_selector)
        return self

    def watches_channel(self, channel: Channel) -> Self:
        """Requests sent on ``channel`` are enqueued (controller-runtime's channel source)."""
        self._channels.append(channel)
        return self

    def with_background_tasks(self, tasks: BackgroundTasks) -> Self:
        """Run ``tasks`` with the manager; a finished task re-enqueues its key, and deleting a
        For object cancels its task (after the tasks' grace period)."""
        self._tasks.append(tasks)
        return self

    def with_event_filter(self, *predicates: Predicate) -> Self:
        """Predicates every watch of this controller applies (after its own)."""
        self._filters.extend(predicates)
        return self

    def with_workers(self, n: int) -> Self:
        """How many keys may be reconciled at once (different keys; never the same key twice)."""
        self._workers = n
        return self

    def with_reconcile_timeout(self, seconds: float) -> Self:
        """Cancel a reconcile that runs longer (counted in
        ``controller_runtime_reconcile_timeouts_total``, then retried with backoff)."""
        self._reconcile_timeout = seconds
        return self

    def with_rate_limiter(self, rate_limiter: RateLimiter) -> Self:
        """Replace the default backoff (5 ms .. 1000 s per key, 10 qps overall)."""
        self._rate_limiter = rate_limiter
        return self

    def without_leader_election(self) -> Self:
        """Run on every replica, leader or not (e.g. a per-node agent)."""
        self._need_leader_election = False
        return self

    def complete(self, reconciler: Reconciler | ReconcileFunc) -> Controller:
        """Build the controller, hook up its watches and add it to the manager."""
        if self._for is None:
            raise ValueError("a controller needs for_(resource)")
        mgr = self._mgr
        name = self._name or self._for.kind.lower()
        # The name labels the controller's metrics: two controllers must not share series.
        if any(getattr(r, "name", None) == name for r in mgr.runnables):
            raise ValueError(f"a controller named {name!r} already exists; use named()")
        controller = Controller(
            name,
            reconciler,
            max_concurrent_reconciles=self._workers,
            rate_limiter=self._rate_limiter,
            clock=mgr.clock,
            metrics=mgr.metrics,
            tracer=mgr.tracer,
            need_leader_election=self._need_leader_election,
            cache_sync_timeout=mgr.options.cache_sync_timeout,
            reconcile_timeout=self._reconcile_timeout,
        )
        first = self._watches[0]
        controller.for_view = View(first.namespace, first.label_selector, first.field_selector)
        # A restricted cache cannot read a For object elsewhere: drop such requests up front.
        scope = mgr.cache.namespaces if self._for.namespaced else None
        for w in self._watches:
            informer = mgr.cache.informer_for(
                w.resource, w.namespace, w.label_selector, w.field_selector
            )
            handler = w.handler if scope is None else _InNamespaces(w.handler, scope)
            controller.watches(informer, handler, (*w.predicates, *self._filters))
        for channel in self._channels:
            channel.subscribe(controller.queue.add)
        for tasks in self._tasks:
            tasks.channel.subscribe(controller.queue.add)
            for_watch = self._watches[0]
            informer = mgr.cache.informer_for(
                for_watch.resource,
                for_watch.namespace,
                for_watch.label_selector,
                for_watch.field_selector,
            )
            informer.add_event_handler(_CancelOnDelete(tasks))
            if tasks not in mgr.runnables:
                mgr.add(tasks)
        mgr.add(controller)
        return controller


@attrs.frozen
class _InNamespaces:
    """A handler whose requests outside ``namespaces`` are dropped (see the module docstring)."""

    handler: Handler
    namespaces: frozenset[str]

    def requests(self, obj: Obj) -> Iterable[Request]:
        return [r for r in self.handler.requests(obj) if r.namespace in self.namespaces]


@attrs.frozen
class _CancelOnDelete:
    """Cancels a key's background task when its For object is deleted."""

    tasks: BackgroundTasks

    def on_add(self, obj: Obj) -> None:
        pass

    def on_update(self, old: Obj, new: Obj) -> None:
        pass

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        real = object_of(obj)
        m = meta(real)
        if m.get("name"):
            self.tasks.cancel(Request(str(m.get("namespace") or ""), str(m["name"])))
