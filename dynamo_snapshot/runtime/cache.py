"""Cache: the process-wide set of shared informers, and reads served from them.

An :class:`InformerCache` hands out one :class:`~dynamo_snapshot.runtime.informer.SharedInformer`
per view, i.e. per (resource, namespace, label selector, field selector): every controller in the
process that asks for the same view shares one watch and one store. It runs them all (``run``),
tells when all have synced (``wait_for_sync``, which names the resources still missing: almost
always an RBAC rule that forbids listing or watching them), and answers reads from memory with the
:mod:`~dynamo_snapshot.runtime.reader` contract (``get`` raises ``NotFound``; ``list`` takes
``labels``, ``fields`` and ``index``), the way controller-runtime's cache-backed client does.

**Namespaces.** ``InformerCache(client, namespaces=["a", "b"])`` restricts the cache to those
namespaces, as controller-runtime's ``cache.Options.DefaultNamespaces`` does: a view of a
namespaced resource that names no namespace watches exactly those (one list and one watch per
namespace, merged into one store: see :mod:`~dynamo_snapshot.runtime.informer`), never the whole
cluster, so namespaced Roles in those namespaces are all the process needs. A view or a read in a
namespace outside the set raises :class:`NamespaceNotCached` instead of answering "nothing there"
(or quietly reading the server). A ``list`` without a namespace means every namespace of the set.
Cluster-scoped resources are not affected. Without ``namespaces`` the cache covers all namespaces.

**Which view answers a read.** A read never answers from a view that cannot hold the object:

* ``get`` uses an unfiltered view that covers the namespace (the one for exactly that namespace,
  else one for several namespaces including it, else the all-namespaces one). A label- or
  field-filtered view cannot prove that an object is absent, so it answers only when the read
  names it (``view=View(...)``).
* ``list`` uses an unfiltered covering view, else a filtered one whose selectors are exactly the
  read's, else the named view. The namespace, selectors and index are then applied in memory.
* No such view: :class:`NoInformer` (the manager's client then reads live).

**Indexes** (``add_index(resource, name, fn)``) belong to the resource, not to a view: every view
of the resource, existing or created later, maintains them. Two controllers may register the same
name with the same function; a different function under a taken name is an error.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import anyio
import attrs

from .client import Client
from .errors import NotFound
from .informer import SharedInformer, Transform, drop_managed_fields, namespace_scope
from .reader import IndexQuery, View, require_namespace
from .resource import Resource
from .selectors import field_selector_matcher, label_selector_matcher
from .store import NAMESPACE_INDEX, IndexFunc, Obj, Representation

__all__ = [
    "CacheSyncTimeout",
    "InformerCache",
    "NamespaceNotCached",
    "NoInformer",
    "View",
    "label_selector_matcher",
]

OnSkip = Callable[[str, BaseException], None]


class CacheSyncTimeout(Exception):
    """Informers did not complete their first list in time."""

    def __init__(self, pending: list[str], timeout: float) -> None:
        names = ", ".join(pending)
        super().__init__(
            f"timed out after {timeout:g}s waiting for caches to sync: {names}. This usually "
            f"means RBAC is missing: the service account needs list and watch on these resources"
        )
        self.pending = pending


class NoInformer(LookupError):
    """A cached read that no informer's view can answer."""


class NamespaceNotCached(LookupError):
    """A view or read of a namespace the cache is restricted away from (see the module
    docstring). Not a :class:`NoInformer`: reading such a namespace is a bug to report, not a
    read to send to the server instead."""

    def __init__(self, resource: Resource, namespace: str, watched: frozenset[str]) -> None:
        super().__init__(
            f"{resource} in namespace {namespace}: not cached, this cache watches only "
            f"namespace(s) {', '.join(sorted(watched))}"
        )
        self.namespace = namespace


@attrs.frozen
class _InformerKey:
    resource: Resource
    namespaces: frozenset[str] | None
    """None: all namespaces (always None for a cluster-scoped resource)."""
    label_selector: str | None
    field_selector: str | None


class InformerCache:
    """Shared informers keyed by (resource, namespace, selectors). See the module docstring."""

    def __init__(
        self,
        client: Client,
        *,
        default_transform: Transform | None = drop_managed_fields,
        transforms: Mapping[Resource, Transform | None] | None = None,
        resync_period: float | None = None,
        representation: Representation = "bytes",
        informer_factory: Callable[..., SharedInformer] = SharedInformer,
        on_skip: OnSkip | None = None,
        namespaces: Iterable[str] | None = None,
    ) -> None:
        self.client = client
        names = frozenset(namespaces or ()) - {""}
        self.namespaces: frozenset[str] | None = names or None
        """The namespaces this cache is restricted to (None: all). See the module docstring."""
        self._default_transform = default_transform
        self._transforms = dict(transforms or {})
        self._resync_period = resync_period
        self._representation: Representation = representation
        self._factory = informer_factory
        self._informers: dict[_InformerKey, SharedInformer] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._started: set[_InformerKey] = set()
        self._indexers: dict[Resource, dict[str, IndexFunc]] = {}
        self._on_skip = on_skip

    def _scope(
        self, resource: Resource, namespace: str | Collection[str] | None
    ) -> frozenset[str] | None:
        """The namespaces a view of ``resource`` in ``namespace`` covers (None: all); no
        namespace means the cache's own set. Outside that set: :class:`NamespaceNotCached`."""
        if not resource.namespaced:
            return None
        wanted = namespace_scope(resource, namespace)
        if wanted is None:
            return self.namespaces
        if self.namespaces is not None and not wanted <= self.namespaces:
            raise NamespaceNotCached(resource, min(wanted - self.namespaces), self.namespaces)
        return wanted

    def informer_for(
        self,
        resource: Resource,
        namespace: str | Collection[str] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> SharedInformer:
        """The shared informer for this view, created (and started, if the cache runs) on first
        request. ``namespace``: one name, several (one informer over all of them), or None (the
        cache's namespaces: all unless restricted)."""
        key = _InformerKey(
            resource,
            self._scope(resource, namespace),
            label_selector or None,
            field_selector or None,
        )
        informer = self._informers.get(key)
        if informer is None:
            scope = key.namespaces
            informer = self._factory(
                self.client,
                resource,
                # One namespace is passed as a plain name, as before several were possible.
                namespace=next(iter(scope)) if scope and len(scope) == 1 else scope,
                label_selector=key.label_selector,
                field_selector=key.field_selector,
                resync_period=self._resync_period,
                transform=self._transforms.get(resource, self._default_transform),
                representation=self._representation,
                indexers=dict(self._indexers.get(resource, {})),
                **({"on_skip": self._on_skip} if self._on_skip is not None else {}),
            )
            self._informers[key] = informer
            if self._tg is not None:
                self._start(key, informer)
        return informer

    def informers(self) -> builtins.list[SharedInformer]:
        return list(self._informers.values())

    def _start(self, key: _InformerKey, informer: SharedInformer) -> None:
        assert self._tg is not None
        self._started.add(key)
        self._tg.start_soon(informer.run, name=f"informer {informer.name}")

    async def run(self) -> None:
        """Run every informer, including those requested later, until cancelled."""
        if self._tg is not None:
            raise RuntimeError("InformerCache is already running")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for key, informer in list(self._informers.items()):
                    self._start(key, informer)
                # Keep the group open even with no informers yet: more may be requested.
                await anyio.sleep_forever()
        finally:
            self._tg = None
            self._started.clear()

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self._informers.values())

    async def wait_for_sync(self, timeout: float = 120.0) -> None:
        """Wait until every informer has synced; raise :class:`CacheSyncTimeout` naming the
        ones that did not."""
        with anyio.move_on_after(timeout):
            while True:
                pending = [i for i in self._informers.values() if not i.has_synced()]
                if not pending:
                    return
                for informer in pending:
                    await informer.wait_for_sync(timeout)
        pending_names = [i.name for i in self._informers.values() if not i.has_synced()]
        if pending_names:
            raise CacheSyncTimeout(pending_names, timeout)

    # -- indexes ---------------------------------------------------------------------------

    def add_index(self, resource: Resource, name: str, fn: IndexFunc) -> None:
        """Maintain index ``name`` (``fn(obj)`` → the values ``obj`` is found under) in every view
        of ``resource``; read it with ``list(resource, index=(name, value))``. Register while
        wiring. The same (name, function) twice is allowed; another function under a taken name
        raises ``ValueError``."""
        if name == NAMESPACE_INDEX:
            raise ValueError(f"index name {name!r} is reserved")
        registered = self._indexers.setdefault(resource, {})
        known = registered.get(name)
        if known is not None:
            if known is not fn:
                raise ValueError(f"index {name!r} of {resource} exists with another function")
            return
        registered[name] = fn
        for key, informer in self._informers.items():
            if key.resource == resource:
                informer.add_indexer(name, fn)

    def index_function(self, resource: Resource, name: str) -> IndexFunc:
        """The function registered as index ``name`` of ``resource`` (``KeyError`` if none)."""
        try:
            return self._indexers[resource][name]
        except KeyError:
            raise KeyError(f"no index {name!r} registered for {resource}") from None

    # -- cached reads (the reader contract; see the module docstring) -----------------------

    def _named(self, resource: Resource, view: View) -> SharedInformer:
        key = _InformerKey(
            resource,
            self._scope(resource, view.namespace),
            view.labels or None,
            view.fields or None,
        )
        informer = self._informers.get(key)
        if informer is None:
            raise NoInformer(f"no informer for {resource} with view {view}")
        return informer

    def _covering(
        self,
        resource: Resource,
        namespace: str | None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> SharedInformer | None:
        """An informer able to answer for ``namespace`` (None: every namespace of the cache)
        and these selectors."""
        ns = namespace if resource.namespaced else None
        # A read of every namespace needs a view of at least every namespace the cache has.
        needed = frozenset({ns}) if ns else self.namespaces
        best: tuple[int, SharedInformer] | None = None
        for k, informer in self._informers.items():
            if k.resource != resource:
                continue
            if k.namespaces is not None and (needed is None or not needed <= k.namespaces):
                continue  # a view of some namespaces cannot answer for others
            unfiltered = k.label_selector is None and k.field_selector is None
            exact = k.label_selector == (labels or None) and k.field_selector == (fields or None)
            if not (unfiltered or exact):
                continue  # it may lack objects the read asks for
            rank = (0 if k.namespaces == needed else 2) + (0 if unfiltered else 1)
            if best is None or rank < best[0]:
                best = (rank, informer)
        return None if best is None else best[1]

    def covers(self, resource: Resource, namespace: str | None = None) -> bool:
        """Whether some view can answer a ``get`` of ``resource`` in ``namespace``."""
        try:
            return self._covering(resource, self._checked(resource, namespace)) is not None
        except NamespaceNotCached:
            return False

    def _checked(self, resource: Resource, namespace: str | None) -> str | None:
        """``namespace``, after making sure the cache may hold it (:class:`NamespaceNotCached`)."""
        if namespace and resource.namespaced:
            self._scope(resource, namespace)
        return namespace

    def get_nowait(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        view: View | None = None,
    ) -> dict[str, Any]:
        """:meth:`get` for synchronous code (handlers, map functions)."""
        ns = self._checked(resource, require_namespace(resource, name, namespace))
        if view is not None:
            informer = self._named(resource, view)
        else:
            found = self._covering(resource, ns)
            if found is None:
                where = f" in namespace {ns}" if ns else ""
                raise NoInformer(
                    f"no unfiltered informer caches {resource}{where}; request one with "
                    "informer_for() while wiring, or name a view"
                )
            informer = found
        obj = informer.store.get_by_name(name, ns)
        if obj is None:
            raise NotFound(
                404,
                "NotFound",
                f'{resource} "{name}" not found (cache)',
                {"name": name, "kind": resource.plural},
            )
        return obj  # type: ignore[return-value]

    async def get(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        view: View | None = None,
    ) -> dict[str, Any]:
        """The cached object (a fresh dict), or ``NotFound``. See the module docstring."""
        return self.get_nowait(resource, name, namespace, view=view)

    def list_nowait(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        index: IndexQuery | None = None,
        view: View | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """:meth:`list` for synchronous code (handlers, map functions)."""
        ns = self._checked(resource, namespace if resource.namespaced else None)
        if view is not None:
            informer = self._named(resource, view)
        else:
            found = self._covering(resource, ns, labels, fields)
            if found is None:
                where = f" in namespace {ns}" if ns else ""
                raise NoInformer(f"no informer can list {resource}{where} with these selectors")
            informer = found
        store = informer.store
        objs: builtins.list[Obj]
        # The view may hold more namespaces than the read asks for.
        narrow = ns if ns and informer.namespaces != frozenset({ns}) else None
        if index is not None:
            objs = store.by_index(index[0], index[1])
            if narrow:
                objs = [o for o in objs if (o.get("metadata") or {}).get("namespace") == narrow]
        elif narrow:
            objs = store.by_index(NAMESPACE_INDEX, narrow)
        else:
            objs = store.list()
        if labels and labels != informer.label_selector:
            match = label_selector_matcher(labels)
            objs = [o for o in objs if match((o.get("metadata") or {}).get("labels") or {})]
        if fields and fields != informer.field_selector:
            fmatch = field_selector_matcher(fields)
            objs = [o for o in objs if fmatch(o)]
        return objs  # type: ignore[return-value]

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        index: IndexQuery | None = None,
        view: View | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Cached objects (fresh dicts) matching the query. See the module docstring."""
        return self.list_nowait(
            resource, namespace, labels=labels, fields=fields, index=index, view=view
        )
