"""Handlers: which reconcile requests an event stands for.

A controller reconciles one kind of object (its *For* kind), but it also watches others: the Jobs
it created, the Pods those Jobs run. A handler maps an object from any watched informer to the
:class:`~dynamo_snapshot.runtime.reconcile.Request` s of the objects that must be reconciled
because of it:

* :class:`EnqueueRequestForObject`: the object itself (used for the *For* kind).
* :class:`EnqueueRequestForOwner`: the object's *controlling* owner of a given kind, from
  ``metadata.ownerReferences`` (the entry with ``controller: true``); used for *Owns*.
* :class:`EnqueueRequestsFromMapFunc`: whatever a function returns; used for *Watches*.

An update enqueues the requests of both the old and the new object, so a change that moves an
object from one owner (or label) to another wakes both.

:class:`EventDispatcher` glues one handler, its predicates and a controller's queue into the
informer's ``EventHandler`` interface. It runs inside the informer's callback and therefore only
filters and adds keys to the queue: synchronous, non-blocking, and never raising into the informer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import attrs

from .informer import DeletedFinalStateUnknown, object_of
from .objects import Obj, meta
from .predicate import Predicate
from .reconcile import Request
from .resource import Resource

__all__ = [
    "EnqueueRequestForObject",
    "EnqueueRequestForOwner",
    "EnqueueRequestsFromMapFunc",
    "EventDispatcher",
    "Handler",
    "MapFunc",
    "Queue",
]

log = logging.getLogger(__name__)

MapFunc = Callable[[Obj], Iterable[Request]]


class Handler(Protocol):
    """Maps one object to the requests it should trigger."""

    def requests(self, obj: Obj) -> Iterable[Request]: ...


class Queue(Protocol):
    """The part of the work queue a dispatcher needs."""

    def add(self, item: Request) -> None: ...


class EnqueueRequestForObject:
    """The object's own namespace and name."""

    def requests(self, obj: Obj) -> Iterable[Request]:
        m = meta(obj)
        name = m.get("name")
        if not name:
            return ()
        return (Request(str(m.get("namespace") or ""), str(name)),)


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]  # "batch/v1" -> "batch", "v1" -> ""


@attrs.frozen
class EnqueueRequestForOwner:
    """The owner of ``owner``'s kind named in the object's ownerReferences.

    With ``only_controller`` (the default, as for *Owns*), only the reference marked
    ``controller: true`` counts. The owner lives in the object's namespace, or is cluster-scoped.
    """

    owner: Resource
    only_controller: bool = True

    def requests(self, obj: Obj) -> Iterable[Request]:
        m = meta(obj)
        namespace = str(m.get("namespace") or "") if self.owner.namespaced else ""
        out: list[Request] = []
        for ref in m.get("ownerReferences") or ():
            if not isinstance(ref, Mapping):
                continue
            if self.only_controller and not ref.get("controller"):
                continue
            # The version of an owner reference may differ from ours; group and kind identify it.
            if ref.get("kind") != self.owner.kind:
                continue
            if _group_of(str(ref.get("apiVersion") or "")) != self.owner.group:
                continue
            if ref.get("name"):
                out.append(Request(namespace, str(ref["name"])))
        return out


@attrs.frozen
class EnqueueRequestsFromMapFunc:
    """Whatever ``fn(obj)`` returns (it must be fast and must not block)."""

    fn: MapFunc

    def requests(self, obj: Obj) -> Iterable[Request]:
        return self.fn(obj)


class EventDispatcher:
    """An informer ``EventHandler`` that filters with predicates and enqueues requests."""

    def __init__(
        self,
        handler: Handler,
        queue: Queue,
        predicates: Sequence[Predicate] = (),
        *,
        name: str = "",
    ) -> None:
        self.handler = handler
        self.queue = queue
        self.predicates = tuple(predicates)
        self.name = name

    def _enqueue(self, *objs: Obj) -> None:
        seen: set[Request] = set()
        for obj in objs:
            try:
                requests = list(self.handler.requests(obj))
            except Exception:
                # A broken map function must not take the informer down with it.
                log.exception("handler failed", extra={"controller": self.name})
                continue
            for req in requests:
                if req not in seen:
                    seen.add(req)
                    self.queue.add(req)

    def _passes(self, check: Callable[[Predicate], bool]) -> bool:
        try:
            return all(check(p) for p in self.predicates)
        except Exception:
            log.exception("predicate failed", extra={"controller": self.name})
            return False

    def on_add(self, obj: Obj) -> None:
        if self._passes(lambda p: p.create(obj)):
            self._enqueue(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self._passes(lambda p: p.update(old, new)):
            self._enqueue(old, new)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        real = object_of(obj)
        if self._passes(lambda p: p.delete(real)):
            self._enqueue(real)
