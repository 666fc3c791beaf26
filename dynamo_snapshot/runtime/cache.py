"""Cache: the process-wide set of shared informers, and reads served from them.

An :class:`InformerCache` hands out one :class:`~dynamo_snapshot.runtime.informer.SharedInformer`
per (resource, namespace, label selector, field selector): every controller in the process that
asks for the same view shares one watch and one store. It runs them all (``run``), tells when all
have synced (``wait_for_sync``, which names the resources still missing: almost always an RBAC
rule that forbids listing or watching them), and answers reads from memory (``get``, ``list``),
the way controller-runtime's cache-backed client does.

Reads choose the informer that covers the request: the one for exactly that namespace, else the
all-namespaces one; an unfiltered informer is preferred over a label-filtered one. A read for a
resource no informer covers raises :class:`NoInformer`: call ``informer_for`` while wiring.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import attrs

from .client import Client
from .informer import SharedInformer, Transform, drop_managed_fields
from .resource import Resource
from .store import NAMESPACE_INDEX, Obj, Representation

__all__ = ["CacheSyncTimeout", "InformerCache", "NoInformer", "label_selector_matcher"]


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
    """A cached read for a resource/namespace no informer covers."""


@attrs.frozen
class _InformerKey:
    resource: Resource
    namespace: str | None
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
    ) -> None:
        self.client = client
        self._default_transform = default_transform
        self._transforms = dict(transforms or {})
        self._resync_period = resync_period
        self._representation: Representation = representation
        self._factory = informer_factory
        self._informers: dict[_InformerKey, SharedInformer] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._started: set[_InformerKey] = set()

    def informer_for(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> SharedInformer:
        """The shared informer for this view, created (and started, if the cache runs) on first
        request."""
        key = _InformerKey(
            resource,
            namespace if resource.namespaced else None,
            label_selector or None,
            field_selector or None,
        )
        informer = self._informers.get(key)
        if informer is None:
            informer = self._factory(
                self.client,
                resource,
                namespace=key.namespace,
                label_selector=key.label_selector,
                field_selector=key.field_selector,
                resync_period=self._resync_period,
                transform=self._transforms.get(resource, self._default_transform),
                representation=self._representation,
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

    # -- cached reads -----------------------------------------------------------------------

    def _covering(self, resource: Resource, namespace: str | None) -> SharedInformer:
        ns = namespace if resource.namespaced else None
        candidates = [
            (k, i)
            for k, i in self._informers.items()
            if k.resource == resource and (k.namespace is None or k.namespace == ns)
        ]
        if not candidates:
            where = f" in namespace {ns}" if ns else ""
            raise NoInformer(
                f"no informer caches {resource}{where}; request one with informer_for() first"
            )

        def rank(item: tuple[_InformerKey, SharedInformer]) -> tuple[int, int]:
            k, _ = item
            return (
                0 if k.namespace == ns else 1,
                0 if k.label_selector is None and k.field_selector is None else 1,
            )

        return min(candidates, key=rank)[1]

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> Obj | None:
        """The cached object, or None. Treat it as read-only."""
        informer = self._covering(resource, namespace)
        ns = namespace if resource.namespaced else None
        return informer.store.get_by_name(name, ns)

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> builtins.list[Obj]:
        """Cached objects of ``resource`` (in ``namespace``, matching ``label_selector``)."""
        informer = self._covering(resource, namespace)
        store = informer.store
        if resource.namespaced and namespace and informer.namespace is None:
            objs = store.by_index(NAMESPACE_INDEX, namespace)
        else:
            objs = store.list()
        if label_selector:
            match = label_selector_matcher(label_selector)
            objs = [o for o in objs if match((o.get("metadata") or {}).get("labels") or {})]
        return objs


# -- label selectors ------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*(!)?\s*([^\s!=,()]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)\s*$")


def _split_requirements(selector: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


Labels = Mapping[str, Any]
Check = Callable[[Labels], bool]


def _requirement(req: str, selector: str) -> Check:
    eq = _EQ_RE.match(req)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    st = _SET_RE.match(req)
    if not st:
        raise ValueError(f"invalid label selector requirement {req!r} in {selector!r}")
    neg, key, op, values = st.groups()
    if op:
        vals = frozenset(x.strip() for x in values.split(",") if x.strip())
        if op == "in":
            return lambda labels: labels.get(key) in vals
        return lambda labels: labels.get(key) not in vals
    if neg:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def label_selector_matcher(selector: str) -> Check:
    """Compile a label selector string (``a=b,c!=d,e in (x,y),!f,g``) into a predicate on a
    labels mapping, with the API server's semantics."""
    checks = [_requirement(req, selector) for req in _split_requirements(selector)]
    return lambda labels: all(c(labels) for c in checks)
