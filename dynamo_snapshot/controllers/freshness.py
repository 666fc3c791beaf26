"""Read-your-writes for a reconciler that reads from a cache.

After a reconcile writes an object, the informer shows the write a few milliseconds later. A
reconcile of the same key that starts in between (woken by another object's event) would act on
the older copy: create a Job or a content again (AlreadyExists, then adoption), repeat a status
write, emit a second Event. Each converges, but costs API writes and confuses a reader of Events.

`Freshness` remembers, per key, the resourceVersion of the object as this process last wrote it;
`stale(key, obj)` says whether the cached copy is older, and the reconcile then returns
`Result(requeue_after=CATCH_UP)` instead of acting. (Comparing resourceVersions as integers is
what etcd-backed servers allow in practice; a value that is not an integer is never "stale".)
The framework has no such helper; it is kept here, small, until it does.
"""

from __future__ import annotations

from typing import Final

import attrs

from dynamo_snapshot.runtime import Obj, meta

CATCH_UP: Final = 0.05


def _rv(obj: Obj) -> int | None:
    try:
        return int(str(meta(obj).get("resourceVersion") or ""))
    except ValueError:
        return None


@attrs.define
class Freshness:
    _written: dict[str, int] = attrs.field(factory=dict)

    def wrote(self, key: str, obj: Obj) -> None:
        rv = _rv(obj)
        if rv is not None:
            self._written[key] = max(rv, self._written.get(key, 0))

    def stale(self, key: str, cached: Obj) -> bool:
        want = self._written.get(key)
        if want is None:
            return False
        rv = _rv(cached)
        if rv is None or rv >= want:
            del self._written[key]
            return False
        return True

    def forget(self, key: str) -> None:
        self._written.pop(key, None)
