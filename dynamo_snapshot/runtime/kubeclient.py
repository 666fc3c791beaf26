"""KubeClient: the client a reconciler uses: reads from the cache, writes to the API server.

This is controller-runtime's default client. Reads follow the
:mod:`~dynamo_snapshot.runtime.reader` contract and are answered by the informer cache, so a
reconcile costs no API call to look at the world; a read no cached view can answer (a resource
nobody watches) goes to the API server instead, and is logged once per resource so that the
missing watch is visible. When the cache is restricted to some namespaces, a read of another
namespace raises :class:`~dynamo_snapshot.runtime.cache.NamespaceNotCached` (it is not sent to
the server), and a ``list`` of every namespace sent to the server lists each of the cache's.
``view=`` makes a read use one view explicitly (and never the server).
Writes go to the API server through :class:`~dynamo_snapshot.runtime.client.Client`: ``create``,
``update``, ``update_status``, ``patch_merge``, ``patch_json``, ``patch_status``, ``delete``, with
the same signatures. ``live`` is that raw client (also for watches); ``reader`` the live reader.

Remember what a cache read means: the object as of the last event this process saw. After a
write, the cache catches up within milliseconds, not at once; optimistic locking (resourceVersion)
turns a decision made on a stale read into a ``Conflict`` instead of a lost update.
"""

from __future__ import annotations

import builtins
import logging
from typing import Any

from .cache import InformerCache, NoInformer
from .client import Client
from .reader import IndexQuery, LiveReader, View
from .resource import Resource

__all__ = ["KubeClient"]

log = logging.getLogger(__name__)


class KubeClient:
    """Cache reads, live writes. See the module docstring."""

    def __init__(self, cache: InformerCache, live: Client, reader: LiveReader) -> None:
        self.cache = cache
        self.live = live
        self.reader = reader
        self.host = live.host
        self._warned: set[Resource] = set()
        # Writes are the live client's own methods: same signatures, nothing in between.
        self.create = live.create
        self.update = live.update
        self.update_status = live.update_status
        self.patch_merge = live.patch_merge
        self.patch_json = live.patch_json
        self.patch_status = live.patch_status
        self.delete = live.delete

    def _uncached(self, resource: Resource, err: NoInformer) -> None:
        if resource not in self._warned:
            self._warned.add(resource)
            log.info("reading %s from the API server: %s", resource, err)

    async def get(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        view: View | None = None,
    ) -> dict[str, Any]:
        """From the cache (``NotFound`` if absent); from the server when nothing caches it."""
        try:
            return self.cache.get_nowait(resource, name, namespace, view=view)
        except NoInformer as err:
            if view is not None:
                raise
            self._uncached(resource, err)
        return await self.reader.get(resource, name, namespace)

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
        """From the cache; from the server when no cached view can answer."""
        try:
            return self.cache.list_nowait(
                resource, namespace, labels=labels, fields=fields, index=index, view=view
            )
        except NoInformer as err:
            if view is not None:
                raise
            self._uncached(resource, err)
        watched = self.cache.namespaces
        if namespace is None and resource.namespaced and watched is not None:
            # "Every namespace" of a restricted process: its own, one list each, never a
            # cluster-wide list it is likely not allowed.
            out: builtins.list[dict[str, Any]] = []
            for ns in sorted(watched):
                out += await self.reader.list(
                    resource, ns, labels=labels, fields=fields, index=index
                )
            return out
        return await self.reader.list(
            resource, namespace, labels=labels, fields=fields, index=index
        )
