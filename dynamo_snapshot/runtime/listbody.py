"""List bodies decoded one item at a time, without a pass over the whole body first.

A list at resourceVersion "0" is answered from the apiserver's watch cache and ignores ``limit``:
for 50k Pods the body is about 250 MB. Decoding it in one call, even only into raw item slices
(``msgspec.Raw``), is a single C call that holds the event loop (and the GIL) for the whole
body: 0.2 s on an idle machine, seconds on a busy one, during which lease renewal, probes and
other watches stall.

:func:`lazy_items` splits the ``items`` array instead, one item per step, so the caller can hand
the loop a turn between items. The apiserver writes compact JSON and starts every item of a list
with the same key (``{"metadata":`` for built-in kinds, ``{"apiVersion":`` for custom
resources), so the boundary between two items is the byte sequence ``},{"<first key>":``. Inside a
JSON string every ``"`` is escaped, so the sequence can only be structural; it can still occur
deeper inside an item (an array of objects whose first key is the same, e.g. ownerReferences
before an ``apiVersion`` key). Such a false boundary leaves an unbalanced fragment, which fails
to parse, and the fragment is then extended to the next candidate; a fragment that parses is a
whole item. Bodies of another shape (items not last, whitespace between items) fall back to
decoding the remainder as one array.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

__all__ = ["LazyList", "lazy_list"]


class LazyList:
    """A list answer: ``metadata`` decoded, ``items`` decoded on iteration (iterate once)."""

    def __init__(self, body: bytes, metadata: dict[str, Any], start: int, end: int) -> None:
        self.metadata = metadata
        self._body = body
        self._start = start
        self._end = end

    @property
    def items(self) -> Iterator[dict[str, Any]]:
        return lazy_items(self._body, self._start, self._end)


def lazy_list(body: bytes) -> LazyList | None:
    """Split a list body; None when it is not shaped as the apiserver writes lists."""
    key = body.find(b'"items":[')
    if key < 0:
        return None
    try:
        envelope = orjson.loads(body[:key] + b'"items":[]}')
    except orjson.JSONDecodeError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("metadata", {}), dict):
        return None
    tail = body.rstrip()
    if not tail.endswith(b"]}"):
        return None
    start = key + len(b'"items":[')
    end = len(tail) - 2  # the "]" that closes the items array
    if end < start:
        return None
    return LazyList(body, envelope.get("metadata") or {}, start, end)


def lazy_items(body: bytes, start: int, end: int) -> Iterator[dict[str, Any]]:
    """Yield the items of ``body[start:end]`` (the inside of a JSON array), one at a time."""
    view = memoryview(body)
    while start < end and body[start] in b" \t\r\n":
        start += 1
    if start >= end:
        return
    first_key_end = body.find(b'":', start + 2, end)
    if body[start : start + 2] != b'{"' or first_key_end < 0:
        yield from _rest(view, start, end)
        return
    boundary = b"},{" + body[start + 1 : first_key_end + 2]  # },{"metadata":
    pos = search = start
    while True:
        cut = body.find(boundary, search, end)
        if cut < 0:
            break
        try:
            item = orjson.loads(view[pos : cut + 1])
        except orjson.JSONDecodeError:
            search = cut + 1  # a boundary inside an item: extend to the next one
            continue
        yield item
        pos = search = cut + 2
    try:
        last = orjson.loads(view[pos:end])
    except orjson.JSONDecodeError:
        yield from _rest(view, pos, end)
        return
    yield last


def _rest(view: memoryview, start: int, end: int) -> Iterator[dict[str, Any]]:
    """The fallback: what is left, as one array."""
    items = orjson.loads(b"[" + bytes(view[start:end]) + b"]")
    yield from items
