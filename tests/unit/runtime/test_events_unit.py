"""The event recorder's buffering, spam filter and aggregation. The API server is replaced by a
recording fake (`FakeEventClient`) so the sending order can be inspected; the real round trip is
in tests/integration/runtime/test_manager_events.py."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.errors import NotFound
from dynamo_snapshot.runtime.events import EventBroadcaster
from dynamo_snapshot.runtime.resource import Resource


class FakeEventClient:
    """Records creates and patches; can be told an Event has expired."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []
        self.expired: set[str] = set()
        self.gate: anyio.Event | None = None

    async def create(self, resource: Resource, obj: dict[str, Any], namespace: str) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        self.created.append(obj)
        return obj

    async def patch_merge(
        self, resource: Resource, name: str, patch: dict[str, Any], namespace: str
    ) -> Any:
        if name in self.expired:
            raise NotFound(404, "NotFound", f"events {name} not found")
        self.patched.append((name, patch))
        return patch


POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
}


def make(**kw: Any) -> tuple[EventBroadcaster, FakeEventClient, FakeClock]:
    client, clock = FakeEventClient(), FakeClock()
    return EventBroadcaster(client, host="h", clock=clock, **kw), client, clock  # type: ignore[arg-type]


async def test_repeats_are_aggregated_into_a_count() -> None:
    b, client, _ = make()
    rec = b.recorder("ctl")
    for _ in range(3):
        rec.normal(POD, "Started", "started it")
    rec.warning(POD, "Failed", "it failed")
    b.stop()
    await b.run()
    assert [e["reason"] for e in client.created] == ["Started", "Failed"]
    first = client.created[0]
    assert first["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "p",
                                       "namespace": "ns", "uid": "u"}  # fmt: skip
    assert first["metadata"]["namespace"] == "ns"
    assert first["source"] == {"component": "ctl", "host": "h"}
    assert [p["count"] for _, p in client.patched] == [2, 3]
    assert {n for n, _ in client.patched} == {first["metadata"]["name"]}


async def test_a_changed_object_still_aggregates() -> None:
    """Defect 6: the involved object's resourceVersion is not part of the aggregation key."""
    b, client, _ = make()
    rec = b.recorder("ctl")
    for rv in ("1", "2", "3"):
        pod = {**POD, "metadata": {**POD["metadata"], "resourceVersion": rv}}
        rec.warning(pod, "Failed", "it failed")
    b.stop()
    await b.run()
    assert len(client.created) == 1
    assert [p["count"] for _, p in client.patched] == [2, 3]


async def test_another_object_or_message_is_another_event() -> None:
    b, client, _ = make()
    rec = b.recorder("ctl")
    rec.warning(POD, "Failed", "it failed")
    rec.warning({**POD, "metadata": {**POD["metadata"], "uid": "other"}}, "Failed", "it failed")
    rec.warning(POD, "Failed", "it failed differently")
    b.stop()
    await b.run()
    assert len(client.created) == 3
    assert client.patched == []


async def test_expired_event_is_created_again() -> None:
    b, client, _ = make()
    rec = b.recorder("ctl")
    async with anyio.create_task_group() as tg:
        tg.start_soon(b.run)
        rec.normal(POD, "R", "m")
        await anyio.wait_all_tasks_blocked()
        client.expired.add(client.created[0]["metadata"]["name"])
        rec.normal(POD, "R", "m")
        await anyio.wait_all_tasks_blocked()
        b.stop()
    assert len(client.created) == 2
    assert client.patched == []


async def test_full_buffer_drops_instead_of_blocking() -> None:
    b, client, _ = make(buffer_size=3)
    rec = b.recorder("ctl")
    for i in range(10):
        rec.normal(POD, "R", f"m{i}")  # returns at once: nothing is sent yet
    assert b.dropped == 7
    b.stop()
    await b.run()
    assert len(client.created) == 3


async def test_spam_filter_per_object() -> None:
    b, client, clock = make(burst=2, refill_seconds=300)
    rec = b.recorder("ctl")
    other = {**POD, "metadata": {**POD["metadata"], "name": "q"}}
    for i in range(4):
        rec.normal(POD, "R", f"m{i}")
    rec.normal(other, "R", "x")
    assert b.dropped == 2
    clock.advance(300)
    rec.normal(POD, "R", "later")
    b.stop()
    await b.run()
    assert [e["message"] for e in client.created] == ["m0", "m1", "x", "later"]


async def test_recording_never_waits_for_the_sender() -> None:
    b, client, _ = make()
    client.gate = anyio.Event()
    rec = b.recorder("ctl")
    async with anyio.create_task_group() as tg:
        tg.start_soon(b.run)
        await anyio.wait_all_tasks_blocked()
        rec.normal(POD, "A", "a")
        await anyio.wait_all_tasks_blocked()  # the sender is stuck in create()
        for i in range(50):  # synchronous: returns with the sender still blocked
            rec.normal(POD, "B", f"b{i}")
        client.gate.set()
        b.stop()
    # One object may burst 25 events; the other 26 were dropped, none waited.
    assert len(client.created) == 25
    assert b.dropped == 26


def test_rejects_unknown_type() -> None:
    b, _, _ = make()
    with pytest.raises(ValueError, match="Normal or Warning"):
        b.recorder("x").event(POD, "Info", "R", "m")
