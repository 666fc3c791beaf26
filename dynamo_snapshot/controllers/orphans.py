"""The orphan collector (SPEC §4.2 step 5): contents whose PodSnapshot is gone are deleted.

The reference design leaks a content when a crash falls between creating it and writing the
binding while the PodSnapshot is deleted meanwhile (or when its finalizer is removed by hand).
Every `interval` seconds the collector looks at the cached contents; one whose PodSnapshot (the
`snapshotRef` namespace/name *and* uid) is absent is remembered with the time it was first seen
so. Once it has been absent for `grace_period` seconds, the PodSnapshot is read **live**: a cache
that has not caught up (a PodSnapshot created a moment ago, a relist in progress) never costs a
content. Only a live NotFound, or another incarnation under that name, deletes it, with the
content's UID as precondition. With ``--namespace``, only contents of PodSnapshots in the watched
namespaces are judged: the others belong to the controller that watches theirs.
"""

from __future__ import annotations

import contextlib
import logging

import anyio
import attrs

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.podsnapshotcontent import PodSnapshotContent
from dynamo_snapshot.api.resources import POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.api.wire import ApiDecodeError
from dynamo_snapshot.runtime import (
    Clock,
    Conflict,
    EventRecorder,
    KubeClient,
    NotFound,
    RealClock,
    meta,
)

log = logging.getLogger(__name__)

DEFAULT_GRACE_PERIOD = 300.0


@attrs.define
class OrphanCollector:
    """A manager runnable (leader only). See the module docstring."""

    client: KubeClient
    recorder: EventRecorder
    grace_period: float = DEFAULT_GRACE_PERIOD
    interval: float | None = None
    clock: Clock = attrs.field(factory=RealClock)
    need_leader_election: bool = True
    deleted: int = 0
    _missing_since: dict[str, float] = attrs.field(factory=dict)
    _stopped: anyio.Event | None = None

    @property
    def period(self) -> float:
        # A tenth of the grace period, between 1 s and 30 s: late by at most that much.
        return self.interval or min(30.0, max(1.0, self.grace_period / 10))

    async def run(self) -> None:
        self._stopped = anyio.Event()
        while not self._stopped.is_set():
            try:
                await self.collect_once()
            except Exception:
                log.exception("orphan collection failed; trying again in %gs", self.period)
            await self.clock.wait(self._stopped, self.period)

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def _snapshot_uid(self, namespace: str, name: str, *, live: bool) -> str | None:
        reader = self.client.reader if live else self.client
        try:
            obj = await reader.get(POD_SNAPSHOTS, name, namespace)
        except NotFound:
            return None
        return str(meta(obj).get("uid") or "")

    async def collect_once(self) -> list[str]:
        """One sweep; returns the names of the contents it deleted."""
        now = self.clock.now()
        still_missing: set[str] = set()
        deleted: list[str] = []
        # A process watching some namespaces only (--namespace) can read only their PodSnapshots.
        watched = self.client.cache.namespaces
        for raw in await self.client.list(POD_SNAPSHOT_CONTENTS):
            try:
                content = PodSnapshotContent.from_dict(raw)
            except ApiDecodeError:
                continue
            if content.metadata.deleting:
                continue
            ref = content.spec.snapshot_ref
            if watched is not None and ref.namespace not in watched:
                continue  # the controller that watches that namespace judges this one
            uid = content.metadata.uid or ""
            if await self._snapshot_uid(ref.namespace, ref.name, live=False) == ref.uid:
                continue
            still_missing.add(uid)
            since = self._missing_since.setdefault(uid, now)
            if now - since < self.grace_period:
                continue
            # The cache says gone for the whole grace period; only the server may confirm it.
            if await self._snapshot_uid(ref.namespace, ref.name, live=True) == ref.uid:
                still_missing.discard(uid)
                continue
            name = content.metadata.name or ""
            with contextlib.suppress(NotFound, Conflict):
                await self.client.delete(POD_SNAPSHOT_CONTENTS, name, uid=uid)
                deleted.append(name)
                self.deleted += 1
                message = (
                    f"deleted {name}: its PodSnapshot {ref.namespace}/{ref.name} (uid {ref.uid})"
                    f" has been gone for at least {self.grace_period:g}s"
                )
                log.info("%s", message, extra={"key": name})
                self.recorder.event(
                    raw, "Normal", c.REASON_ORPHAN_CONTENT_DELETED, message,
                    resource=POD_SNAPSHOT_CONTENTS,
                )  # fmt: skip
            still_missing.discard(uid)
        # Forget contents that came back (or went away) so their clocks start afresh.
        for uid in list(self._missing_since):
            if uid not in still_missing:
                del self._missing_since[uid]
        return deleted
