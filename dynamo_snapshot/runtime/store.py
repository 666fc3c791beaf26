"""Store: the informer's local copy of one resource, keyed ``namespace/name``, with indexes.

A :class:`Store` holds the latest known state of every object an informer watches. Keys are
``namespace/name`` for namespaced objects and ``name`` for cluster-scoped ones (:func:`key_of`).
Named indexers map an object to index values
(``add_indexer("node", lambda o: [o["spec"]["nodeName"]])``) so that
``by_index("node", "n1")`` answers without a scan.

Only the informer writes (``upsert``, ``delete``, ``replace``); everyone else reads. Readers must
treat what they get as read-only.

Representation. How an object is held in memory is private to the store and chosen at
construction:

* ``"bytes"`` (default): each object is kept as its compact JSON (orjson) encoding, plus its key,
  resourceVersion and index values. A ~4 KB Pod costs little more than its JSON size, and every read
  decodes a fresh ``dict``: callers never share mutable state with the cache and nothing is
  deep-copied.
* ``"dict"``: the decoded ``dict`` itself is kept and returned as-is (no copy at all on reads), at
  several times the memory. A caller that mutates it corrupts the cache.

The benchmark in ``bench/`` measures both; the default follows its result.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import orjson

from .objects import Obj, key_of, split_key

__all__ = [
    "NAMESPACE_INDEX",
    "IndexFunc",
    "IndexFuncError",
    "Obj",
    "Representation",
    "Store",
    "key_of",
    "namespace_index",
    "split_key",
]

IndexFunc = Callable[[Obj], list[str]]
"""Maps an object to the index values it is found under (an empty list: not indexed)."""

Representation = Literal["bytes", "dict"]

NAMESPACE_INDEX = "namespace"
"""The index every informer store has for namespaced resources: ``by_index("namespace", ns)``."""


class IndexFuncError(Exception):
    """An index function raised for one object; the store left that object as it was."""

    def __init__(self, key: str, index: str, cause: BaseException) -> None:
        super().__init__(f"index {index!r} failed for {key}: {cause!r}")
        self.key = key
        self.index = index
        self.cause = cause


log = logging.getLogger(__name__)


def _safe_key(obj: Obj) -> str:
    try:
        return key_of(obj)
    except ValueError:
        return "<no name>"


def namespace_index(obj: Obj) -> list[str]:
    """Index function for :data:`NAMESPACE_INDEX`."""
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def _resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _compact_json(obj: Obj) -> bytes:
    # orjson returns its growable output buffer as the bytes object, so a 3.7 KB document keeps
    # about 8 KB allocated (measured with tracemalloc). Copying it once into an exactly sized
    # bytes object halves what every cached object costs.
    return bytes(memoryview(orjson.dumps(obj)))


class _Entry:
    """One cached object. ``__slots__`` keeps the per-object overhead to a few dozen bytes."""

    __slots__ = ("data", "index_values", "rv")

    def __init__(self, data: bytes | Obj, rv: str, index_values: dict[str, list[str]] | None):
        self.data = data
        self.rv = rv
        self.index_values = index_values


class Store:
    """Objects keyed ``namespace/name`` with named indexes. See the module docstring."""

    def __init__(
        self,
        *,
        representation: Representation = "bytes",
        indexers: Mapping[str, IndexFunc] | None = None,
    ) -> None:
        if representation not in ("bytes", "dict"):
            raise ValueError(f"unknown representation {representation!r}")
        self._bytes = representation == "bytes"
        self.representation: Representation = representation
        self._items: dict[str, _Entry] = {}
        self._indexers: dict[str, IndexFunc] = {}
        # index name -> index value -> keys
        self._indices: dict[str, dict[str, set[str]]] = {}
        for name, fn in (indexers or {}).items():
            self.add_indexer(name, fn)

    # -- reads ------------------------------------------------------------------------------

    def _decode(self, entry: _Entry) -> Obj:
        data = entry.data
        if isinstance(data, bytes):
            decoded: dict[str, Any] = orjson.loads(data)
            return decoded
        return data

    def get(self, key: str) -> Obj | None:
        """The object under ``key``, or None."""
        entry = self._items.get(key)
        return None if entry is None else self._decode(entry)

    def get_by_name(self, name: str, namespace: str | None = None) -> Obj | None:
        """The object named ``name`` in ``namespace`` (None for cluster-scoped)."""
        return self.get(f"{namespace}/{name}" if namespace else name)

    def resource_version_of(self, key: str) -> str | None:
        """The cached object's resourceVersion without decoding it."""
        entry = self._items.get(key)
        return None if entry is None else entry.rv

    def list(self) -> builtins.list[Obj]:
        """Every object, in no particular order."""
        return [self._decode(e) for e in self._items.values()]

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def index_names(self) -> builtins.list[str]:
        return list(self._indexers)

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        """Keys of the objects under ``value`` in the named index."""
        try:
            index = self._indices[index_name]
        except KeyError:
            raise KeyError(f"no indexer named {index_name!r}") from None
        return list(index.get(value, ()))

    def by_index(self, index_name: str, value: str) -> builtins.list[Obj]:
        """Objects under ``value`` in the named index."""
        return [self._decode(self._items[k]) for k in self.index_keys(index_name, value)]

    def index_values(self, index_name: str) -> builtins.list[str]:
        """Every value currently present in the named index."""
        return [v for v, keys in self._indices[index_name].items() if keys]

    # -- indexers ---------------------------------------------------------------------------

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Register a named index. Allowed at any time: existing objects are indexed at once."""
        if name in self._indexers:
            raise ValueError(f"indexer {name!r} already exists")
        self._indexers[name] = fn
        index: dict[str, set[str]] = {}
        self._indices[name] = index
        for key, entry in self._items.items():
            try:
                values = list(fn(self._decode(entry)))
            except Exception as err:
                # Same rule as upsert: one bad object must not break the index for the rest.
                log.warning("store: %s", IndexFuncError(key, name, err))
                values = []
            if entry.index_values is None:
                entry.index_values = {}
            entry.index_values[name] = values
            for v in values:
                index.setdefault(v, set()).add(key)

    def _compute_index_values(self, obj: Obj) -> dict[str, builtins.list[str]] | None:
        if not self._indexers:
            return None
        out: dict[str, builtins.list[str]] = {}
        for name, fn in self._indexers.items():
            try:
                out[name] = list(fn(obj))
            except Exception as err:
                raise IndexFuncError(_safe_key(obj), name, err) from err
        return out

    def _unindex(self, key: str, entry: _Entry) -> None:
        if not entry.index_values:
            return
        for name, values in entry.index_values.items():
            index = self._indices[name]
            for v in values:
                keys = index.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[v]

    def _index(self, key: str, entry: _Entry) -> None:
        if not entry.index_values:
            return
        for name, values in entry.index_values.items():
            index = self._indices[name]
            for v in values:
                index.setdefault(v, set()).add(key)

    # -- writes (the informer's) ------------------------------------------------------------

    def _make_entry(self, obj: Obj) -> _Entry:
        data: bytes | Obj = _compact_json(obj) if self._bytes else obj
        return _Entry(data, _resource_version(obj), self._compute_index_values(obj))

    def upsert(self, obj: Obj) -> bool:
        """Insert or replace ``obj`` under its key. Returns True if the key already existed.

        Raises :class:`IndexFuncError` (and changes nothing) when an index function raises."""
        key = key_of(obj)
        new = self._make_entry(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = new
        self._index(key, new)
        return old is not None

    def delete(self, key: str) -> Obj | None:
        """Remove ``key``; returns what was cached, or None."""
        entry = self._items.pop(key, None)
        if entry is None:
            return None
        self._unindex(key, entry)
        return self._decode(entry)

    def replace(self, objs: builtins.list[Obj]) -> None:
        """Make the store hold exactly ``objs`` (those an index function rejects are left out)."""
        self._items = {}
        self._indices = {name: {} for name in self._indexers}
        for obj in objs:
            try:
                self.upsert(obj)
            except IndexFuncError as err:
                log.warning("store: skipping %s", err)
