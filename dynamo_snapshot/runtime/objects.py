"""Objects: the one definition of what a Kubernetes object is here, and pure helpers on it.

Objects are plain JSON mappings (``Obj``), never generated models. This module holds the single
definition of the object type, of ``metadata`` access and of the store key format
(``namespace/name``, or ``name`` for a cluster-scoped object), plus the pure, synchronous helpers
a reconciler needs to build what it writes:

* :func:`set_controller_reference`: make ``owner`` the controlling owner of ``obj``
  (``controller: true``, ``blockOwnerDeletion: true``), as controller-runtime's
  ``SetControllerReference`` does; the garbage collector then deletes ``obj`` with its owner and
  ``owns()`` watches map ``obj``'s events back to the owner.
* :func:`merge_patch`: the RFC 7386 JSON merge patch that turns ``old`` into ``new``.
* :func:`has_finalizer`.

The helpers that talk to the API server (finalizers, conflict retries, status writes) are in
:mod:`dynamo_snapshot.runtime.writes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .resource import Resource

__all__ = [
    "AlreadyOwned",
    "Obj",
    "has_finalizer",
    "key_of",
    "merge_patch",
    "meta",
    "name_of",
    "namespace_of",
    "object_key",
    "set_controller_reference",
    "split_key",
]

Obj = Mapping[str, Any]
"""A Kubernetes object as raw JSON. Treat the cache's as read-only."""


def meta(obj: Obj) -> Mapping[str, Any]:
    """``obj["metadata"]``, or an empty mapping when it is missing or not a mapping."""
    m = obj.get("metadata")
    return m if isinstance(m, Mapping) else {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: Obj) -> str:
    """The namespace, ``""`` for a cluster-scoped object."""
    return str(meta(obj).get("namespace") or "")


def object_key(namespace: str | None, name: str) -> str:
    """The key format used everywhere (store, work queue, logs): ``namespace/name`` or ``name``."""
    return f"{namespace}/{name}" if namespace else name


def key_of(obj: Obj) -> str:
    """The store key of an object; raises ``ValueError`` when it has no name."""
    m = meta(obj)
    name = m.get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    return object_key(m.get("namespace") or None, str(name))


def split_key(key: str) -> tuple[str | None, str]:
    """``"ns/name"`` → ``("ns", "name")``; ``"name"`` → ``(None, "name")``."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else (None, ns)


def has_finalizer(obj: Obj, finalizer: str) -> bool:
    return finalizer in (meta(obj).get("finalizers") or ())


class AlreadyOwned(ValueError):
    """The object already has a different controlling owner."""


def set_controller_reference(
    owner: Obj, obj: dict[str, Any], owner_resource: Resource | None = None
) -> dict[str, Any]:
    """Make ``owner`` the controlling owner of ``obj`` (modified in place and returned).

    ``owner`` must have been read from the API server (it needs its ``uid``); ``owner_resource``
    supplies ``apiVersion``/``kind`` when ``owner`` lacks them. An existing reference to the same
    owner is replaced; a different controlling owner raises :class:`AlreadyOwned` (an object has
    at most one controller). A namespaced owner must be in ``obj``'s namespace, and a
    cluster-scoped object cannot have a namespaced owner: the garbage collector would delete it.
    """
    om = meta(owner)
    api_version = owner.get("apiVersion") or (owner_resource.api_version if owner_resource else "")
    kind = owner.get("kind") or (owner_resource.kind if owner_resource else "")
    uid, name = om.get("uid"), om.get("name")
    if not (api_version and kind and uid and name):
        raise ValueError("owner needs apiVersion, kind, metadata.name and metadata.uid")
    obj_meta = obj.setdefault("metadata", {})
    owner_ns = om.get("namespace") or ""
    obj_ns = obj_meta.get("namespace") or ""
    if owner_ns and owner_ns != obj_ns:
        raise ValueError(
            f"owner {owner_ns}/{name} is namespaced: it can own objects of its namespace only, "
            f"not of {obj_ns or 'cluster scope'}"
        )
    ref = {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    group = str(api_version).rpartition("/")[0]
    refs: list[dict[str, Any]] = []
    for existing in obj_meta.get("ownerReferences") or ():
        same = (
            existing.get("kind") == kind
            and str(existing.get("apiVersion", "")).rpartition("/")[0] == group
            and existing.get("name") == name
        )
        if same:
            continue  # replaced below
        if existing.get("controller"):
            raise AlreadyOwned(
                f"{obj_meta.get('name')} is already controlled by {existing.get('kind')} "
                f"{existing.get('name')}"
            )
        refs.append(dict(existing))
    refs.append(ref)
    obj_meta["ownerReferences"] = refs
    return obj


def merge_patch(old: Obj, new: Obj) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: changed and added keys
    with their new values, removed keys as ``None``, nested objects recursively, lists whole.
    ``{}`` means no change. (A ``None`` *value* in ``new`` cannot be expressed by a merge patch
    and is treated as a removal.)"""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = _without_nulls(value)
            continue
        old_value = old[key]
        if isinstance(value, Mapping) and isinstance(old_value, Mapping):
            sub = merge_patch(old_value, value)
            if sub:
                patch[key] = sub
        elif value != old_value:
            patch[key] = _without_nulls(value)
    return patch


def _without_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value
