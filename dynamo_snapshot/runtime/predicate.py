"""Predicates: which events are worth a reconcile.

An informer reports every change of every object it watches; most are noise for a given
controller (a status write by the controller itself, a heartbeat annotation). A
:class:`Predicate` filters events before they become work-queue keys, with one method per event
type: ``create``, ``update(old, new)`` and ``delete`` (nothing in the framework emits
controller-runtime's generic events: a channel source sends requests, not objects). An event
passes a
controller's watch only when every predicate on it says yes.

Provided, as in controller-runtime's ``predicate`` package:

* :func:`generation_changed`: updates pass only when ``metadata.generation`` moved, i.e. the spec
  changed (status and metadata writes do not bump it).
* :func:`labels_changed`, :func:`annotations_changed`: updates pass when those maps differ.
* :func:`resource_version_changed`: drops resync no-op updates.
* :func:`new_predicate`: one ``obj -> bool`` test applied to every event type.
* :class:`Funcs`: a function per event type; an absent one passes everything.
* :func:`and_`, :func:`or_`, :func:`not_` to combine them.

Creates and deletes pass the *change* predicates: there is no "before" to compare with.
Predicates are synchronous, cheap, and must not mutate the objects (they are the cache's own).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .objects import Obj, meta

__all__ = [
    "Funcs",
    "Predicate",
    "and_",
    "annotations_changed",
    "generation_changed",
    "labels_changed",
    "new_predicate",
    "not_",
    "or_",
    "resource_version_changed",
]


class Predicate:
    """Passes every event; subclasses override the event types they filter."""

    def create(self, obj: Obj) -> bool:
        return True

    def update(self, old: Obj, new: Obj) -> bool:
        return True

    def delete(self, obj: Obj) -> bool:
        return True


@attrs.frozen
class Funcs(Predicate):
    """A predicate from functions, one per event type; ``None`` passes that type."""

    on_create: Callable[[Obj], bool] | None = None
    on_update: Callable[[Obj, Obj], bool] | None = None
    on_delete: Callable[[Obj], bool] | None = None

    def create(self, obj: Obj) -> bool:
        return self.on_create is None or self.on_create(obj)

    def update(self, old: Obj, new: Obj) -> bool:
        return self.on_update is None or self.on_update(old, new)

    def delete(self, obj: Obj) -> bool:
        return self.on_delete is None or self.on_delete(obj)


def new_predicate(fn: Callable[[Obj], bool]) -> Predicate:
    """Apply ``fn`` to the object of every event (the new object of an update)."""
    return Funcs(on_create=fn, on_update=lambda _old, new: fn(new), on_delete=fn)


def _changed(field: str) -> Predicate:
    def update(old: Obj, new: Obj) -> bool:
        return meta(old).get(field) != meta(new).get(field)

    return Funcs(on_update=update)


def generation_changed() -> Predicate:
    """Updates pass only when ``metadata.generation`` changed (a spec change)."""
    return _changed("generation")


def resource_version_changed() -> Predicate:
    """Updates pass only when ``metadata.resourceVersion`` changed (drops resync repeats)."""
    return _changed("resourceVersion")


def _map_changed(field: str) -> Predicate:
    def update(old: Obj, new: Obj) -> bool:
        # A missing map and an empty one are the same to anyone reading them.
        return dict(meta(old).get(field) or {}) != dict(meta(new).get(field) or {})

    return Funcs(on_update=update)


def labels_changed() -> Predicate:
    """Updates pass only when ``metadata.labels`` changed."""
    return _map_changed("labels")


def annotations_changed() -> Predicate:
    """Updates pass only when ``metadata.annotations`` changed."""
    return _map_changed("annotations")


def and_(*preds: Predicate) -> Predicate:
    """Passes when every one of ``preds`` passes."""
    return Funcs(
        on_create=lambda o: all(p.create(o) for p in preds),
        on_update=lambda a, b: all(p.update(a, b) for p in preds),
        on_delete=lambda o: all(p.delete(o) for p in preds),
    )


def or_(*preds: Predicate) -> Predicate:
    """Passes when any of ``preds`` passes."""
    return Funcs(
        on_create=lambda o: any(p.create(o) for p in preds),
        on_update=lambda a, b: any(p.update(a, b) for p in preds),
        on_delete=lambda o: any(p.delete(o) for p in preds),
    )


def not_(pred: Predicate) -> Predicate:
    """Passes exactly when ``pred`` does not."""
    return Funcs(
        on_create=lambda o: not pred.create(o),
        on_update=lambda a, b: not pred.update(a, b),
        on_delete=lambda o: not pred.delete(o),
    )
