"""Reflector: keep a local copy of one resource in step with the API server by list-then-watch.

A :class:`Reflector` lists a resource (optionally one namespace, label and field selectors), hands
the full list to its sink (``replace``), then watches from the list's resourceVersion and hands
each change to the sink (``added``/``modified``/``deleted``). It owns the resourceVersion
bookkeeping and the failure handling, following client-go's reflector:

* The first list asks for resourceVersion ``"0"`` (any recent state, served from the API server's
  watch cache) with a page size; the pages are followed through ``continue`` tokens. The server
  may ignore the limit at ``"0"``; if it did page, later relists keep paging.
* Watches ask for ``allowWatchBookmarks``; a BOOKMARK only advances the resourceVersion. Each
  watch asks the server to end it after a random 5-10 minutes so that clients do not reconnect in
  lockstep; a watch that ends normally is resumed from the last resourceVersion without a list.
* A watch answered 410 Gone (the resourceVersion was compacted away) ends the watch and relists
  from the last resourceVersion. Only when the *list* itself answers 410 does the reflector fall
  back to ``""`` (a consistent read of the latest state).
* A watch that receives nothing (not even a bookmark) for ``watch_idle_timeout`` (90 s) is
  considered dead and resumed, like a connection failure.
* A connection failure or a 429 while watching backs off, then resumes the watch. Any other
  failure backs off, then relists. Backoff is exponential with jitter, 0.8 s up to 30 s, reset
  after two healthy minutes (:class:`~dynamo_snapshot.runtime.backoff.Backoff`).

Objects are decoded from the raw JSON stream (:meth:`Client.watch`), never into generated models.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import aiohttp
import anyio
import attrs
import orjson

from .backoff import Backoff
from .client import WATCH_IDLE_TIMEOUT, Client
from .errors import ApiError, Gone
from .resource import Resource

__all__ = ["Reflector", "ReflectorSink", "ReflectorStats"]

log = logging.getLogger(__name__)

# A watch that ends cleanly this fast with no event is treated as a failure: otherwise a server
# that closes streams at once would be hammered in a tight loop.
_SHORT_WATCH_S = 1.0


class ReflectorSink(Protocol):
    """Where a reflector delivers what it learns (the informer implements this)."""

    async def replace(self, items: Iterable[dict[str, Any]], resource_version: str) -> None:
        """The complete current state, from a list (decoded lazily: iterate it once)."""

    def added(self, obj: dict[str, Any]) -> None: ...

    def modified(self, obj: dict[str, Any]) -> None: ...

    def deleted(self, obj: dict[str, Any]) -> None: ...


@attrs.define
class ReflectorStats:
    """Counters for tests and debugging."""

    lists: int = 0
    watches: int = 0
    gone: int = 0
    errors: int = 0
    events: int = 0
    bookmarks: int = 0
    last_error: BaseException | None = None


def _is_too_large_rv(err: ApiError) -> bool:
    causes = err.details.get("causes") or []
    return any(isinstance(c, dict) and c.get("reason") == "ResourceVersionTooLarge" for c in causes)


def _is_transport_error(err: BaseException) -> bool:
    return isinstance(err, OSError | aiohttp.ClientError | TimeoutError)


class Reflector:
    """List-then-watch one resource into a :class:`ReflectorSink`. See the module docstring."""

    def __init__(
        self,
        client: Client,
        resource: Resource,
        sink: ReflectorSink,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        backoff: Backoff | None = None,
        watch_timeout_range: tuple[float, float] = (300.0, 600.0),
        rand: Callable[[float, float], float] = random.uniform,
        watch_idle_timeout: float = WATCH_IDLE_TIMEOUT,
    ) -> None:
        self.client = client
        self.resource = resource
        self.sink = sink
        self.namespace = namespace if resource.namespaced else None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        self.watch_timeout_range = watch_timeout_range
        self.watch_idle_timeout = watch_idle_timeout
        self._rand = rand
        self.stats = ReflectorStats()
        self.last_sync_resource_version = ""
        # Set when a list at last_sync_resource_version answered 410: relist from "" instead.
        self._rv_unavailable = False
        # Whether the server paged the list at "0"; if so, relists page too (client-go's rule).
        self._paginated = False

    @property
    def name(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        sel = f" ({self.label_selector})" if self.label_selector else ""
        return f"{self.resource}{where}{sel}"

    # -- loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                await self.list_and_watch()
            except Exception as err:
                self.stats.errors += 1
                self.stats.last_error = err
                log.warning("reflector %s: %s; relisting after backoff", self.name, err)
            await self.backoff.sleep()

    async def list_and_watch(self) -> None:
        """One list, then watches until a watch needs a relist (returns) or fails (raises)."""
        await self._list()
        while True:
            started = time.monotonic()
            try:
                received = await self._watch_once()
            except Gone as err:
                # The resourceVersion we watch from has been compacted: relist from it.
                self.stats.gone += 1
                log.info("reflector %s: watch expired (%s); relisting", self.name, err.message)
                return
            except ApiError as err:
                if err.status == 429:
                    await self._backoff_after(err)
                    continue
                raise
            except Exception as err:
                if not _is_transport_error(err):
                    raise
                # The API server went away or the connection broke: resume the watch, no relist.
                await self._backoff_after(err)
                continue
            if received == 0 and time.monotonic() - started < _SHORT_WATCH_S:
                await self._backoff_after(RuntimeError("watch closed immediately"))

    async def _backoff_after(self, err: BaseException) -> None:
        self.stats.errors += 1
        self.stats.last_error = err
        delay = await self.backoff.sleep()
        log.info("reflector %s: watch failed (%s); retried after %.1fs", self.name, err, delay)

    # -- list -------------------------------------------------------------------------------

    def _relist_resource_version(self) -> str:
        if self._rv_unavailable:
            return ""
        return self.last_sync_resource_version or "0"

    async def _list(self) -> None:
        rv = self._relist_resource_version()
        try:
            raw_items, list_rv = await self._list_pages(rv)
        except ApiError as err:
            if not (isinstance(err, Gone) or _is_too_large_rv(err)) or rv == "":
                raise
            # Our resourceVersion is gone (or ahead of this server): read the latest state.
            log.info("reflector %s: list at %s answered %s; listing latest", self.name, rv, err)
            self._rv_unavailable = True
            raw_items, list_rv = await self._list_pages("")
        self.stats.lists += 1
        self._rv_unavailable = False
        # Items are decoded one at a time as the sink consumes them, so the whole list never
        # exists as dicts at once (see Client.list_raw).
        await self.sink.replace(self._decoded(raw_items), list_rv)
        self.last_sync_resource_version = list_rv

    def _decoded(self, raw_items: Iterable[Any]) -> Iterator[dict[str, Any]]:
        api_version, kind = self.resource.api_version, self.resource.kind
        for raw in raw_items:
            # Items come decoded one at a time from a split body (dicts), or as raw slices.
            item: dict[str, Any] = raw if isinstance(raw, dict) else orjson.loads(memoryview(raw))
            # List items omit apiVersion/kind; watch events carry them. Make both look alike.
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            yield item

    async def _list_pages(self, rv: str) -> tuple[Iterable[Any], str]:
        # A list at a specific resourceVersion with a limit is an exact read from etcd (it can
        # answer 410); without a limit it is served from the watch cache. Page there only if the
        # server paged before.
        limit: int | None = self.page_size
        if rv not in ("", "0") and not self._paginated:
            limit = None
        pages: list[Iterable[Any]] = []  # each page's items, still undecoded
        continue_: str | None = None
        while True:
            try:
                page = await self.client.list_raw(
                    self.resource,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    limit=limit,
                    continue_=continue_,
                    # The continue token carries the resourceVersion of the first page.
                    resource_version=None if continue_ else rv,
                )
            except Gone:
                if continue_ is None:
                    raise
                # The continue token expired mid-way: read it all again in one request.
                log.info("reflector %s: continue token expired; full list", self.name)
                page = await self.client.list_raw(
                    self.resource,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    resource_version=rv,
                )
                return page.items or (), _list_rv(page.metadata)
            pages.append(page.items or ())
            continue_ = page.metadata.get("continue") or None
            if continue_ is None:
                return itertools.chain.from_iterable(pages), _list_rv(page.metadata)
            if rv == "0":
                self._paginated = True

    # -- watch ------------------------------------------------------------------------------

    async def _watch_once(self) -> int:
        """One watch until the server ends it; returns how many events arrived."""
        lo, hi = self.watch_timeout_range
        timeout = max(1, int(self._rand(lo, hi)))
        self.stats.watches += 1
        received = 0
        stream = self.client.watch(
            self.resource,
            self.namespace,
            resource_version=self.last_sync_resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=timeout,
            allow_bookmarks=True,
            idle_timeout=self.watch_idle_timeout,
        )
        async with contextlib.aclosing(stream):
            async for etype, obj in stream:
                received += 1
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if etype == "BOOKMARK":
                    self.stats.bookmarks += 1
                elif etype == "ADDED":
                    self.sink.added(obj)
                elif etype == "MODIFIED":
                    self.sink.modified(obj)
                elif etype == "DELETED":
                    self.sink.deleted(obj)
                else:
                    log.warning("reflector %s: unknown watch event type %r", self.name, etype)
                    continue
                if etype != "BOOKMARK":
                    self.stats.events += 1
                if rv:
                    self.last_sync_resource_version = str(rv)
                # Yield to the loop between events so that a burst cannot starve other tasks.
                await anyio.lowlevel.checkpoint()
        return received


def _list_rv(list_metadata: dict[str, Any]) -> str:
    return str(list_metadata.get("resourceVersion") or "")
