"""Reader: the one reading contract, and the live reader that follows it.

Every reader answers the same two calls with the same meaning, whether it reads the informer
cache (:class:`~dynamo_snapshot.runtime.cache.InformerCache`), the API server
(:class:`LiveReader`, the manager's ``api_reader``) or the manager's ``client`` (cache reads,
live writes):

* ``await get(resource, name, namespace)`` returns the object as a fresh ``dict`` or raises
  :class:`~dynamo_snapshot.runtime.errors.NotFound`. A namespaced resource needs a namespace:
  without one the call raises ``ValueError`` (it is a bug, not an absent object).
* ``await list(resource, namespace=None, *, labels=None, fields=None, index=None)`` returns the
  objects (a ``list`` of dicts, each with ``apiVersion`` and ``kind``) in ``namespace`` (``None``:
  all namespaces) that match the label selector ``labels`` and the field selector ``fields``
  (the API server's selector strings) and, with ``index=(name, value)``, are found under
  ``value`` in the named index (registered with ``InformerCache.add_index``; a live read applies
  the same index function to what the server returned).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from .client import Client
from .objects import Obj
from .resource import Resource
from .selectors import field_selector_matcher

__all__ = ["IndexQuery", "LiveReader", "Reader", "View"]

IndexQuery = tuple[str, str]
"""``(index name, value)``."""


@attrs.frozen
class View:
    """One informer's view of a resource: a namespace, several, or ``None`` (the cache's: all
    unless restricted) and selectors. A read that names a view is answered from that informer
    only."""

    namespace: str | frozenset[str] | None = None
    labels: str | None = None
    fields: str | None = None


class Reader(Protocol):
    """What every reader offers (see the module docstring)."""

    async def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any]: ...

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        index: IndexQuery | None = None,
    ) -> builtins.list[dict[str, Any]]: ...


def require_namespace(resource: Resource, name: str, namespace: str | None) -> str | None:
    """The namespace to read ``name`` from; ``ValueError`` when a namespaced one lacks it."""
    if not resource.namespaced:
        return None
    if not namespace:
        raise ValueError(f"{resource} is namespaced: get {name!r} needs a namespace")
    return namespace


IndexLookup = Callable[[Resource, str], Callable[[Obj], list[str]]]


class LiveReader:
    """Reads straight from the API server with the :class:`Reader` contract (lists are followed
    through every page). ``index_lookup(resource, name)`` returns the index function an
    ``index=`` query applies; the manager passes its cache's registry."""

    def __init__(
        self, client: Client, index_lookup: IndexLookup | None = None, page_size: int = 500
    ) -> None:
        self.client = client
        self._index_lookup = index_lookup
        self._page_size = page_size

    async def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any]:
        ns = require_namespace(resource, name, namespace)
        return await self.client.get(resource, name, ns)

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        labels: str | None = None,
        fields: str | None = None,
        index: IndexQuery | None = None,
    ) -> builtins.list[dict[str, Any]]:
        index_fn = None
        if index is not None:
            if self._index_lookup is None:
                raise KeyError(f"no index {index[0]!r} registered for {resource}")
            index_fn = self._index_lookup(resource, index[0])
        out: builtins.list[dict[str, Any]] = []
        continue_: str | None = None
        while True:
            page = await self.client.list(
                resource,
                namespace if resource.namespaced else None,
                label_selector=labels,
                field_selector=fields,
                limit=self._page_size,
                continue_=continue_,
            )
            for item in page.get("items") or ():
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                if index_fn is None or index[1] in index_fn(item):  # type: ignore[index]
                    out.append(item)
            continue_ = (page.get("metadata") or {}).get("continue") or None
            if not continue_:
                return out


def matches(obj: Obj, fields: str | None) -> bool:
    return fields is None or field_selector_matcher(fields)(obj)
