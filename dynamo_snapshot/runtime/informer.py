"""Informer: a watched, cached, shared view of one resource that calls handlers on change.

A :class:`SharedInformer` runs one :class:`~dynamo_snapshot.runtime.reflector.Reflector` for a
(resource, namespace, label selector, field selector) and keeps what it learns in a
:class:`~dynamo_snapshot.runtime.store.Store`. Given several namespaces, it runs one reflector per
namespace (one list and one watch each, never a cluster-wide one: a process granted only
namespaced Roles can run it) and merges them into the one store, whose keys are
``namespace/name`` anyway; handlers, indexes and ``has_synced`` then cover all of them.

Every registered :class:`EventHandler` hears about each change: ``on_add``,
``on_update(old, new)``, ``on_delete``. Data flows one way: watch → transform → store → handlers;
a handler therefore always sees a store that already holds the change it is told about.

Semantics follow client-go's shared informer:

* Before caching, each object passes through ``transform`` (by default
  :func:`drop_managed_fields`, which removes ``metadata.managedFields``: often half an object's
  size and never needed by a controller).
* After a relist (the first list, or a recovery from 410 Gone), the store equals the fresh list.
  Objects that vanished while the watch was down are announced with ``on_delete`` of a
  :class:`DeletedFinalStateUnknown` tombstone carrying the last state we knew. Objects whose
  resourceVersion changed are announced as updates; unchanged ones are not announced. (client-go
  announces every listed object again; a relist follows a watch failure, and re-announcing
  thousands of unchanged objects then would cost a reconcile each for no new information. A
  controller that wants periodic re-checks asks for ``resync_period``.) A relist yields to the
  event loop every ``yield_every`` objects, so it never holds the loop for long.
* ``has_synced()`` turns true once the first list is in the store (of every namespace's reflector).
  A relist of one namespace replaces only that namespace's objects.
* With ``resync_period``, every handler periodically receives ``on_update(obj, obj)`` for every
  cached object (the hook controllers use to re-check the world), also yielding as it goes.
* A delete for a key the store does not hold is not announced (as in client-go).
* An object the transform or an index function rejects (raises) is skipped: logged with its
  key, counted (``on_skip``; the manager's ``informer_skipped_objects_total``), and the sync goes
  on. Before, the exception failed the whole relist, which then repeated forever.
* A handler added after the informer has synced first receives ``on_add`` for every cached object.

Handlers are synchronous and must not block: they typically put a key on a work queue. An
exception in a handler is logged and does not affect other handlers or the informer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.lowlevel
import attrs

from .backoff import Backoff
from .client import WATCH_IDLE_TIMEOUT, Client
from .reflector import Reflector
from .resource import Resource
from .store import (
    NAMESPACE_INDEX,
    IndexFunc,
    Obj,
    Representation,
    Store,
    key_of,
    namespace_index,
)

__all__ = [
    "DeletedFinalStateUnknown",
    "EventHandler",
    "FuncHandler",
    "SharedInformer",
    "Transform",
    "drop_managed_fields",
    "namespace_scope",
    "object_of",
]

log = logging.getLogger(__name__)

Transform = Callable[[dict[str, Any]], dict[str, Any]]
"""Applied to each freshly decoded object before it is cached; may modify it in place."""


def namespace_scope(
    resource: Resource, namespace: str | Collection[str] | None
) -> frozenset[str] | None:
    """The namespaces a view of ``resource`` covers: None for all (and for a cluster-scoped
    resource), else the set of names (``""`` entries and an empty collection mean all)."""
    if not resource.namespaced or namespace is None:
        return None
    names = frozenset({namespace} if isinstance(namespace, str) else namespace) - {""}
    return names or None


def drop_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The default transform: remove ``metadata.managedFields``."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


@attrs.frozen
class DeletedFinalStateUnknown:
    """A delete we did not see happen (it occurred while the watch was down).

    ``obj`` is the last state the cache held, which may be stale.
    """

    key: str
    obj: Obj


def object_of(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    """The object inside a delete notification, tombstone or not."""
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


@runtime_checkable
class EventHandler(Protocol):
    """Receives an informer's notifications. Callbacks are synchronous and must not block."""

    def on_add(self, obj: Obj) -> None: ...

    def on_update(self, old: Obj, new: Obj) -> None: ...

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None: ...


@attrs.frozen
class FuncHandler:
    """An :class:`EventHandler` from plain functions (``FuncHandler(on_add=f)``, named as the
    predicates' ``Funcs(on_create=...)`` are); a missing one ignores that event."""

    add: Callable[[Obj], None] | None = attrs.field(default=None, alias="on_add")
    update: Callable[[Obj, Obj], None] | None = attrs.field(default=None, alias="on_update")
    delete: Callable[[Obj | DeletedFinalStateUnknown], None] | None = attrs.field(
        default=None, alias="on_delete"
    )

    def on_add(self, obj: Obj) -> None:
        if self.add is not None:
            self.add(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self.update is not None:
            self.update(old, new)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if self.delete is not None:
            self.delete(obj)


class SharedInformer:
    """One watch of one resource, its store, and its handlers. See the module docstring."""

    def __init__(
        self,
        client: Client,
        resource: Resource,
        *,
        namespace: str | Collection[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        transform: Transform | None = drop_managed_fields,
        indexers: Mapping[str, IndexFunc] | None = None,
        representation: Representation = "bytes",
        backoff: Backoff | None = None,
        page_size: int = 500,
        watch_timeout_range: tuple[float, float] = (300.0, 600.0),
        watch_idle_timeout: float = WATCH_IDLE_TIMEOUT,
        yield_every: int = 64,
        on_skip: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.resource = resource
        self.namespaces = namespace_scope(resource, namespace)
        """The namespaces watched (None: all, or a cluster-scoped resource)."""
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.transform = transform
        all_indexers: dict[str, IndexFunc] = {}
        if resource.namespaced:
            all_indexers[NAMESPACE_INDEX] = namespace_index
        all_indexers.update(indexers or {})
        self.store = Store(representation=representation, indexers=all_indexers)
        # One reflector per namespace (sorted, so names and logs are stable), or one for all.
        where: list[str | None] = [*sorted(self.namespaces)] if self.namespaces else [None]
        self.reflectors = tuple(
            Reflector(
                client,
                resource,
                _Sink(self, ns if len(where) > 1 else None),
                namespace=ns,
                label_selector=label_selector,
                field_selector=field_selector,
                page_size=page_size,
                backoff=backoff,
                watch_timeout_range=watch_timeout_range,
                watch_idle_timeout=watch_idle_timeout,
            )
            for ns in where
        )
        self.reflector = self.reflectors[0]
        """The first reflector (the only one unless several namespaces are watched)."""
        # Namespaces (None: the only reflector) whose first list is not in the store yet.
        self._unsynced: set[str | None] = set(where) if len(where) > 1 else {None}
        self._handlers: list[EventHandler] = []
        self._on_skip = on_skip
        self.yield_every = yield_every
        """Objects handled between two turns of the event loop in a relist or resync (0: never
        yield, the old behaviour the loop-stall benchmark compares against)."""
        self.skipped = 0
        self._synced = False
        # Created lazily: an anyio.Event can only be made inside a running event loop, and
        # informers are often constructed before one starts.
        self._synced_event: anyio.Event | None = None
        self._running = False

    def __repr__(self) -> str:
        return f"SharedInformer({self.name})"

    @property
    def name(self) -> str:
        if len(self.reflectors) == 1:
            return self.reflector.name
        sel = f" ({self.label_selector})" if self.label_selector else ""
        return f"{self.resource} in {', '.join(sorted(self.namespaces or ()))}{sel}"

    @property
    def last_sync_resource_version(self) -> str:
        """The only reflector's; "" with several (each namespace's list has its own)."""
        return self.reflector.last_sync_resource_version if len(self.reflectors) == 1 else ""

    # -- handlers ---------------------------------------------------------------------------

    def add_event_handler(self, handler: EventHandler) -> None:
        """Register a handler. If the informer already holds objects, the handler first gets
        ``on_add`` for each of them, so it never misses the initial state."""
        self._handlers.append(handler)
        for obj in self.store.list():
            self._call(handler.on_add, obj)

    def remove_event_handler(self, handler: EventHandler) -> None:
        self._handlers.remove(handler)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Add a named index to the store (allowed before or after start)."""
        self.store.add_indexer(name, fn)

    def _skip(self, key: str, err: BaseException) -> None:
        """An object the transform or an index function rejected: leave the store as it was for
        it, say which one, count it, and go on syncing (a relist would fail the same way)."""
        self.skipped += 1
        log.error("informer %s: skipping %s: %s", self.name, key, err)
        if self._on_skip is not None:
            try:
                self._on_skip(self.resource.group_resource, err)
            except Exception:
                log.exception("informer %s: on_skip failed", self.name)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            obj = args[-1]
            key = obj.key if isinstance(obj, DeletedFinalStateUnknown) else _safe_key(obj)
            log.exception("informer %s: event handler failed for %s", self.name, key)

    # -- sync -------------------------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the first complete list is in the store."""
        return self._synced

    async def wait_for_sync(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`has_synced`; returns whether it did."""
        if self._synced:
            return True
        if self._synced_event is None:
            self._synced_event = anyio.Event()
        with anyio.move_on_after(timeout):
            await self._synced_event.wait()
        return self._synced

    # -- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the reflector (and the resync timer) until cancelled."""
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        try:
            async with anyio.create_task_group() as tg:
                for reflector in self.reflectors:
                    tg.start_soon(reflector.run, name=f"reflector {reflector.name}")
                if self.resync_period:
                    tg.start_soon(self._resync_loop, self.resync_period)
        finally:
            self._running = False

    async def _resync_loop(self, period: float) -> None:
        while True:
            await anyio.sleep(period)
            if self._synced and self._handlers:
                await self.resync()

    async def resync(self) -> None:
        """Deliver ``on_update(obj, obj)`` for every cached object to every handler, decoding one
        object at a time and yielding to the loop every ``yield_every`` objects."""
        for i, key in enumerate(self.store.keys()):
            if self.yield_every and i % self.yield_every == self.yield_every - 1:
                await anyio.lowlevel.checkpoint()
            obj = self.store.get(key)  # None if deleted meanwhile
            if obj is None:
                continue
            for h in tuple(self._handlers):
                self._call(h.on_update, obj, obj)

    # -- what the reflector feeds -----------------------------------------------------------

    def _transform(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.transform(obj) if self.transform is not None else obj

    def _upsert(self, obj: dict[str, Any]) -> None:
        key = _safe_key(obj)
        try:
            obj = self._transform(obj)
            # Decode the previous state only when someone will be told about it.
            old = self.store.get(key) if self._handlers else None
            existed = self.store.upsert(obj)
        except Exception as err:
            self._skip(key, err)
            return
        if not self._handlers:
            return
        for h in tuple(self._handlers):
            if existed and old is not None:
                self._call(h.on_update, old, obj)
            else:
                self._call(h.on_add, obj)

    def _delete(self, obj: dict[str, Any]) -> None:
        key = _safe_key(obj)
        try:
            obj = self._transform(obj)
        except Exception as err:
            self._skip(key, err)
            return
        if self.store.delete(key) is None:
            # client-go's shared informer does not announce a delete for a key it never had (an
            # object an index function rejected, or one deleted twice across a relist).
            return
        for h in tuple(self._handlers):
            self._call(h.on_delete, obj)

    async def _replace(self, items: Iterable[dict[str, Any]], namespace: str | None = None) -> None:
        """Make the store equal ``items``; with ``namespace`` (one of several reflectors), only
        that namespace's part of the store."""
        # One pass over a lazily decoded list: each object is stored (as compact bytes) and
        # announced before the next is decoded, so the list never exists as dicts all at once.
        # Every `yield_every` objects the loop gets a turn: a 50k-object relist is seconds of
        # work, and holding the loop that long stalls lease renewal, probes and other watches.
        store = self.store
        seen: set[str] = set()
        n = 0
        for item in items:
            n += 1
            if self.yield_every and n % self.yield_every == 0:
                await anyio.lowlevel.checkpoint()
            key = _safe_key(item)
            seen.add(key)
            try:
                obj = self._transform(item)
                cached_rv = store.resource_version_of(key)
                if cached_rv is None:
                    store.upsert(obj)
                    old = None
                elif cached_rv != _rv(obj):
                    old = store.get(key) if self._handlers else None
                    store.upsert(obj)
                else:
                    continue  # same resourceVersion: unchanged, nothing to store or announce
            except Exception as err:
                self._skip(key, err)
                continue
            if cached_rv is None:
                for h in tuple(self._handlers):
                    self._call(h.on_add, obj)
            elif old is not None:
                for h in tuple(self._handlers):
                    self._call(h.on_update, old, obj)
        # Deletes that happened while we were not watching: announce them as tombstones.
        # Another namespace's objects are not this list's to judge.
        keys = store.keys() if namespace is None else store.index_keys(NAMESPACE_INDEX, namespace)
        for i, key in enumerate(keys):
            if self.yield_every and i % self.yield_every == self.yield_every - 1:
                await anyio.lowlevel.checkpoint()
            if key not in seen and key in store:
                last = store.delete(key)
                if last is not None:
                    tomb = DeletedFinalStateUnknown(key, last)
                    for h in tuple(self._handlers):
                        self._call(h.on_delete, tomb)
        self._unsynced.discard(namespace)
        if not self._synced and not self._unsynced:
            self._synced = True
            if self._synced_event is not None:
                self._synced_event.set()


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _safe_key(obj: Any) -> str:
    try:
        return key_of(obj)
    except Exception:
        return "<unknown>"


@attrs.frozen
class _Sink:
    """Adapts a reflector's callbacks to the informer's private methods. ``namespace`` is the
    reflector's when it is one of several (its relist replaces only that namespace)."""

    informer: SharedInformer
    namespace: str | None = None

    async def replace(self, items: Iterable[dict[str, Any]], resource_version: str) -> None:
        await self.informer._replace(items, self.namespace)

    def added(self, obj: dict[str, Any]) -> None:
        self.informer._upsert(obj)

    def modified(self, obj: dict[str, Any]) -> None:
        self.informer._upsert(obj)

    def deleted(self, obj: dict[str, Any]) -> None:
        self.informer._delete(obj)
