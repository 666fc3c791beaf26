"""Events: Kubernetes Events about the objects a controller manages, without slowing it down.

A reconciler records what happened (``recorder.event(obj, "Normal", "Created", "created job x")``)
and moves on: :meth:`EventRecorder.event` only appends to a bounded in-memory buffer. The
:class:`EventBroadcaster` (one per manager, running in the manager's task group) sends the buffer
to the API server in the background. As with client-go's event broadcaster:

* **Never blocks, never grows without bound.** When the buffer is full, new events are dropped
  (and counted in ``dropped``); losing an Event is better than stalling a reconcile or the process
  running out of memory.
* **Aggregated.** An event identical to one already sent (same object by kind, namespace, name,
  uid and apiVersion, and the same type, reason, message, component and host; client-go's
  ``getEventKey``, which ignores the object's resourceVersion) is not created again: the
  existing Event's ``count`` is bumped and its ``lastTimestamp`` moved, so a reconcile loop
  that fails every 5 minutes for a day leaves one Event with ``count: 288``, not 288 Events.
* **Spam-filtered.** Each object may emit a burst of 25 events, then one every 5 minutes.

Events are core ``v1`` Events (what ``kubectl describe`` and ``kubectl get events`` show), written
in the object's namespace (``default`` for cluster-scoped objects). Sending failures are logged and
the event is dropped: Events are best effort by design.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

import anyio
import attrs

from .client import Client
from .clock import Clock, RealClock
from .errors import NotFound
from .resource import EVENTS, Resource

__all__ = ["NORMAL", "WARNING", "EventBroadcaster", "EventRecorder"]

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"

_MAX_MESSAGE = 1024
_CACHE_SIZE = 4096  # aggregation and spam-filter entries kept (LRU)


@attrs.frozen
class _Pending:
    involved: Mapping[str, Any]
    type: str
    reason: str
    message: str
    component: str
    at: float  # wall-clock seconds


@attrs.define
class _Sent:
    name: str
    namespace: str
    count: int


def _aggregation_key(ev: _Pending, host: str) -> tuple[str, ...]:
    """client-go's ``getEventKey``: the same event about the same object (by kind, namespace,
    name, uid and apiVersion) from the same source. Not the object's resourceVersion: a
    reconcile that fails the same way after every change of the object must still aggregate."""
    inv = ev.involved
    return (
        ev.component,
        host,
        str(inv.get("kind", "")),
        str(inv.get("namespace", "")),
        str(inv.get("name", "")),
        str(inv.get("fieldPath", "")),
        str(inv.get("uid", "")),
        str(inv.get("apiVersion", "")),
        ev.type,
        ev.reason,
        ev.message,
    )


def _timestamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class EventRecorder:
    """Records events for one component (usually a controller name) into a broadcaster."""

    def __init__(self, broadcaster: EventBroadcaster, component: str) -> None:
        self._broadcaster = broadcaster
        self.component = component

    def event(
        self,
        obj: Mapping[str, Any],
        type: str,
        reason: str,
        message: str,
        *,
        resource: Resource | None = None,
    ) -> None:
        """Queue an event about ``obj`` (``type`` is ``Normal`` or ``Warning``). Never blocks.

        ``resource`` supplies ``apiVersion``/``kind`` when the object lacks them.
        """
        if type not in (NORMAL, WARNING):
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        meta = obj.get("metadata") or {}
        involved = {
            "apiVersion": obj.get("apiVersion") or (resource.api_version if resource else ""),
            "kind": obj.get("kind") or (resource.kind if resource else ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        self._broadcaster.submit(
            _Pending(
                {k: v for k, v in involved.items() if v},
                type,
                reason,
                message[:_MAX_MESSAGE],
                self.component,
                self._broadcaster.wall_time(),
            )
        )

    def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.event(obj, WARNING, reason, message)

    def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.event(obj, NORMAL, reason, message)


class EventBroadcaster:
    """The buffer and background sender behind every :class:`EventRecorder` of a process."""

    need_leader_election = False

    def __init__(
        self,
        client: Client,
        *,
        buffer_size: int = 1000,
        burst: int = 25,
        refill_seconds: float = 300.0,
        host: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.buffer_size = buffer_size
        self.host = host if host is not None else socket.gethostname()
        self._clock = clock or RealClock()
        self._burst = burst
        self._refill = refill_seconds
        self._pending: deque[_Pending] = deque()
        self._wakeup: anyio.Event | None = None
        self._sent: OrderedDict[tuple[str, ...], _Sent] = OrderedDict()
        self._tokens: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()
        self._stopping = False
        self.dropped = 0
        self.sent = 0

    def recorder(self, component: str) -> EventRecorder:
        return EventRecorder(self, component)

    def wall_time(self) -> float:
        return self._clock.wall().timestamp()

    def submit(self, ev: _Pending) -> None:
        if self._stopping or len(self._pending) >= self.buffer_size or not self._allow(ev):
            self.dropped += 1
            return
        self._pending.append(ev)
        if self._wakeup is not None:
            self._wakeup.set()

    def _allow(self, ev: _Pending) -> bool:
        """Per-object token bucket: ``burst`` events, then one per ``refill_seconds``."""
        key = (
            ev.component,
            str(ev.involved.get("namespace", "")),
            str(ev.involved.get("kind", "")),
            str(ev.involved.get("name", "")),
        )
        now = self._clock.now()
        tokens, last = self._tokens.pop(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - last) / self._refill)
        allowed = tokens >= 1.0
        self._tokens[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._tokens) > _CACHE_SIZE:
            self._tokens.popitem(last=False)
        return allowed

    def stop(self) -> None:
        """Stop accepting events; :meth:`run` sends what is buffered and returns."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        """Send buffered events until :meth:`stop` (then flush) or cancellation."""
        while True:
            while self._pending:
                await self._send(self._pending.popleft())
            if self._stopping:
                return
            self._wakeup = anyio.Event()
            if not self._pending and not self._stopping:
                await self._wakeup.wait()

    async def _send(self, ev: _Pending) -> None:
        key = _aggregation_key(ev, self.host)
        try:
            prior = self._sent.get(key)
            if prior is not None:
                try:
                    await self._bump(prior, ev)
                    self._sent.move_to_end(key)
                    self.sent += 1
                    return
                except NotFound:
                    del self._sent[key]  # the Event expired (1 h TTL): start a new one
            self._sent[key] = await self._create(ev)
            if len(self._sent) > _CACHE_SIZE:
                self._sent.popitem(last=False)
            self.sent += 1
        except Exception as err:
            log.warning(
                "dropping event %s %s on %s/%s: %s",
                ev.type, ev.reason, ev.involved.get("namespace"), ev.involved.get("name"), err,
            )  # fmt: skip
            self.dropped += 1

    async def _bump(self, prior: _Sent, ev: _Pending) -> None:
        prior.count += 1
        await self.client.patch_merge(
            EVENTS,
            prior.name,
            {"count": prior.count, "lastTimestamp": _timestamp(ev.at)},
            prior.namespace,
        )

    async def _create(self, ev: _Pending) -> _Sent:
        namespace = str(ev.involved.get("namespace") or "default")
        name = f"{ev.involved.get('name', 'unknown')}.{time.time_ns():x}"
        ts = _timestamp(ev.at)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": dict(ev.involved),
            "type": ev.type,
            "reason": ev.reason,
            "message": ev.message,
            "source": {"component": ev.component, "host": self.host},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "reportingComponent": ev.component,
            "reportingInstance": self.host,
        }
        await self.client.create(EVENTS, body, namespace)
        return _Sent(name, namespace, 1)
