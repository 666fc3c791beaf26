"""Writes: the API round trips every reconciler repeats, done once and safely.

* :func:`retry_on_conflict`: run a read-modify-write again while the server answers ``Conflict``
  (client-go's ``retry.RetryOnConflict`` with its ``DefaultRetry``: 5 tries, 10 ms apart, 10 %
  jitter). The function must re-read what it modifies on every try.
* :func:`add_finalizer` / :func:`remove_finalizer`: a merge patch of ``metadata.finalizers`` that
  carries the ``resourceVersion`` it was computed from, so it cannot drop a finalizer that another
  controller added meanwhile; on ``Conflict`` the object is read again from the server and the
  change recomputed. Both return the object as written (or as it was, if nothing had to change);
  ``remove_finalizer`` returns ``None`` when the object is already gone.
* :func:`patch_status_if_changed`: write ``status`` only when it differs from what the object
  holds, as a merge patch of the status subresource computed from the old and new status (keys
  that disappeared are removed). Writing an unchanged status would cost a request, bump the
  resourceVersion and wake every watcher: a reconcile loop that always writes never settles.

``client`` is the manager's :class:`~dynamo_snapshot.runtime.kubeclient.KubeClient` or a raw
:class:`~dynamo_snapshot.runtime.client.Client`; re-reads after a conflict always go to the server
(the cache may not have seen the winning write yet).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from .client import Client
from .errors import Conflict, NotFound
from .kubeclient import KubeClient
from .objects import Obj, has_finalizer, merge_patch, meta
from .resource import Resource

__all__ = [
    "add_finalizer",
    "patch_status_if_changed",
    "remove_finalizer",
    "retry_on_conflict",
]

T = TypeVar("T")


async def retry_on_conflict(
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int = 5,
    delay: float = 0.01,
    jitter: float = 0.1,
) -> T:
    """``await fn()``, again (up to ``attempts`` times in all) while it raises ``Conflict``; the
    last ``Conflict`` propagates. Other errors propagate at once."""
    for attempt in range(attempts):
        try:
            return await fn()
        except Conflict:
            if attempt == attempts - 1:
                raise
            await anyio.sleep(delay * (1 + random.random() * jitter))
    raise AssertionError("unreachable")


def _live(client: KubeClient | Client) -> Client:
    return client.live if isinstance(client, KubeClient) else client


def _where(obj: Obj) -> tuple[str, str | None, str]:
    m = meta(obj)
    name = str(m.get("name") or "")
    if not name:
        raise ValueError("object has no metadata.name")
    return name, (m.get("namespace") or None), str(m.get("resourceVersion") or "")


async def _set_finalizers(
    client: KubeClient | Client,
    resource: Resource,
    obj: Obj,
    change: Callable[[list[str]], list[str] | None],
) -> dict[str, Any]:
    live = _live(client)
    name, namespace, rv = _where(obj)
    current: Obj = obj
    attempts = 5
    for attempt in range(attempts):
        finalizers = list(meta(current).get("finalizers") or ())
        wanted = change(finalizers)
        if wanted is None:
            return dict(current)  # already as wanted
        patch: dict[str, Any] = {"metadata": {"finalizers": wanted}}
        if rv:
            patch["metadata"]["resourceVersion"] = rv
        try:
            return await live.patch_merge(resource, name, patch, namespace)
        except Conflict:
            if attempt == attempts - 1:
                raise
            current = await live.get(resource, name, namespace)
            rv = str(meta(current).get("resourceVersion") or "")
    raise AssertionError("unreachable")


async def add_finalizer(
    client: KubeClient | Client, resource: Resource, obj: Obj, finalizer: str
) -> dict[str, Any]:
    """Add ``finalizer`` to ``obj`` unless it is there. The server refuses a new finalizer on an
    object that is being deleted (check ``metadata.deletionTimestamp`` first)."""
    if has_finalizer(obj, finalizer):
        return dict(obj)
    return await _set_finalizers(
        client, resource, obj, lambda f: None if finalizer in f else [*f, finalizer]
    )


async def remove_finalizer(
    client: KubeClient | Client, resource: Resource, obj: Obj, finalizer: str
) -> dict[str, Any] | None:
    """Remove ``finalizer`` from ``obj`` if it is there; ``None`` if the object is gone (removing
    the last finalizer of a deleted object lets the server delete it)."""
    if not has_finalizer(obj, finalizer):
        return dict(obj)
    try:
        return await _set_finalizers(
            client,
            resource,
            obj,
            lambda f: [x for x in f if x != finalizer] if finalizer in f else None,
        )
    except NotFound:
        return None


async def patch_status_if_changed(
    client: KubeClient | Client,
    resource: Resource,
    obj: Obj,
    status: Obj,
    *,
    lock: bool = False,
) -> dict[str, Any]:
    """Make ``obj``'s status equal ``status``; no request when it already is. Returns the object
    as written (or ``obj`` unchanged). With ``lock``, the write carries ``obj``'s resourceVersion
    and raises ``Conflict`` if the object changed since it was read."""
    old = obj.get("status") or {}
    if old == status:
        return dict(obj)
    name, namespace, rv = _where(obj)
    patch = merge_patch({"status": old}, {"status": dict(status)})
    if lock and rv:
        patch["metadata"] = {"resourceVersion": rv}
    return await _live(client).patch_status(resource, name, patch, namespace)
