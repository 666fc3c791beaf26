"""Reflector: resourceVersion bookkeeping, paging, and the relist / re-watch decisions.

The API server is replaced by :class:`FakeListWatchClient`, a fake of ``Client.list`` and
``Client.watch`` that answers from a script, because these tests are about the reflector's
decisions in situations (expired continue tokens, a 410 on a list) that a real server produces only
rarely. The same flows against a real kube-apiserver are in tests/integration/runtime.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import anyio
import msgspec
import orjson
import pytest

from dynamo_snapshot.runtime.backoff import Backoff
from dynamo_snapshot.runtime.client import Client, RawList
from dynamo_snapshot.runtime.errors import ApiError, Forbidden, Gone
from dynamo_snapshot.runtime.reflector import Reflector
from dynamo_snapshot.runtime.resource import CONFIGMAPS
from tests.support import wait_for

Step = tuple[str, dict[str, Any]] | BaseException


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}}


def page(rv: str, *items: dict[str, Any], cont: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"metadata": meta, "items": list(items)}


class FakeListWatchClient:
    """FAKE API server for the reflector: scripted list answers and watch streams, with every
    call's arguments recorded. When the watch scripts run out, a watch blocks forever."""

    def __init__(self) -> None:
        self.list_answers: deque[dict[str, Any] | BaseException] = deque()
        self.watch_scripts: deque[list[Step]] = deque()
        self.list_calls: list[dict[str, Any]] = []
        self.watch_calls: list[dict[str, Any]] = []

    async def list_raw(self, resource: Any, namespace: str | None = None, **kw: Any) -> RawList:
        self.list_calls.append(kw)
        answer = self.list_answers.popleft()
        if isinstance(answer, BaseException):
            raise answer
        # As the real client answers: items as undecoded JSON.
        items = [msgspec.Raw(orjson.dumps(i)) for i in answer.get("items") or []]
        return RawList(items=items, metadata=answer.get("metadata") or {})

    async def watch(
        self, resource: Any, namespace: str | None = None, **kw: Any
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.watch_calls.append(kw)
        if not self.watch_scripts:
            await anyio.sleep_forever()
        for step in self.watch_scripts.popleft():
            if isinstance(step, BaseException):
                raise step
            yield step


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def replace(self, items: Iterable[dict[str, Any]], resource_version: str) -> None:
        self.calls.append(("replace", ([i["metadata"]["name"] for i in items], resource_version)))

    def added(self, obj: dict[str, Any]) -> None:
        self.calls.append(("added", obj["metadata"]["name"]))

    def modified(self, obj: dict[str, Any]) -> None:
        self.calls.append(("modified", obj["metadata"]["name"]))

    def deleted(self, obj: dict[str, Any]) -> None:
        self.calls.append(("deleted", obj["metadata"]["name"]))


def make(fake: FakeListWatchClient, sink: RecordingSink, **kw: Any) -> Reflector:
    return Reflector(
        cast(Client, fake),
        CONFIGMAPS,
        sink,
        namespace="ns",
        backoff=Backoff(0.001, 0.001, jitter=0.0),
        **kw,
    )


async def run_until(reflector: Reflector, cond: Callable[[], bool], what: str) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        await wait_for(cond, 5, what)
        tg.cancel_scope.cancel()


async def test_lists_at_zero_then_watches_from_the_list_version_with_bookmarks() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.append(page("10", cm("a", "5")))
    fake.watch_scripts.append(
        [
            ("ADDED", cm("b", "11")),
            ("MODIFIED", cm("a", "12")),
            ("BOOKMARK", {"metadata": {"resourceVersion": "20"}}),
            ("DELETED", cm("b", "21")),
            ("BOOKMARK", {"metadata": {"resourceVersion": "30"}}),
        ]
    )
    r = make(fake, sink, label_selector="app=x", field_selector="metadata.name!=z")
    await run_until(r, lambda: len(fake.watch_calls) == 2, "the second watch")

    assert fake.list_calls == [
        {
            "label_selector": "app=x",
            "field_selector": "metadata.name!=z",
            "limit": 500,
            "continue_": None,
            "resource_version": "0",
        }
    ]
    first, second = fake.watch_calls
    assert first["resource_version"] == "10"
    assert first["allow_bookmarks"] is True
    assert first["label_selector"] == "app=x"
    assert 300 <= first["timeout_seconds"] <= 600
    # A watch that ended normally resumes from the last bookmark, without a list.
    assert second["resource_version"] == "30"
    assert sink.calls == [
        ("replace", (["a"], "10")),
        ("added", "b"),
        ("modified", "a"),
        ("deleted", "b"),
    ]
    assert r.stats.bookmarks == 2
    assert r.stats.events == 3
    assert r.last_sync_resource_version == "30"


async def test_list_items_get_api_version_and_kind() -> None:
    fake = FakeListWatchClient()
    items: list[dict[str, Any]] = []

    class Keep(RecordingSink):
        async def replace(self, its: Iterable[dict[str, Any]], resource_version: str) -> None:
            items.extend(its)

    fake.list_answers.append(page("3", cm("a", "3")))
    r = make(fake, Keep())
    await run_until(r, lambda: bool(fake.watch_calls), "the watch")
    assert items[0]["apiVersion"] == "v1"
    assert items[0]["kind"] == "ConfigMap"


async def test_follows_continue_tokens_and_keeps_paging_relists() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.extend(
        [
            page("10", cm("a", "1"), cm("b", "2"), cont="tok1"),
            page("10", cm("c", "3"), cont="tok2"),
            page("10", cm("d", "4")),
            page("15", cm("a", "1")),
        ]
    )
    fake.watch_scripts.append([Gone(410, "Expired", "too old resource version")])
    r = make(fake, sink, page_size=2)
    await run_until(r, lambda: len(fake.list_calls) == 4 and len(fake.watch_calls) == 2, "relist")

    rvs = [(c["resource_version"], c["continue_"], c["limit"]) for c in fake.list_calls]
    assert rvs == [
        ("0", None, 2),
        # The continue token carries the version; a resourceVersion with it is refused.
        (None, "tok1", 2),
        (None, "tok2", 2),
        # The server paged at "0", so the relist after the 410 pages too.
        ("10", None, 2),
    ]
    assert sink.calls[0] == ("replace", (["a", "b", "c", "d"], "10"))
    assert sink.calls[1] == ("replace", (["a"], "15"))
    assert fake.watch_calls[1]["resource_version"] == "15"
    assert r.stats.gone == 1


async def test_watch_410_relists_from_the_last_version_without_a_limit() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.extend([page("10", cm("a", "5")), page("40", cm("x", "39"))])
    fake.watch_scripts.append(
        [("ADDED", cm("b", "11")), Gone(410, "Expired", "too old resource version: 11 (30)")]
    )
    r = make(fake, sink)
    await run_until(r, lambda: len(fake.watch_calls) == 2, "the watch after the relist")

    relist = fake.list_calls[1]
    assert relist["resource_version"] == "11"
    # Not paged at "0": the relist is served whole from the watch cache (no limit, not exact).
    assert relist["limit"] is None
    assert sink.calls[-1] == ("replace", (["x"], "40"))
    assert fake.watch_calls[1]["resource_version"] == "40"


async def test_list_410_falls_back_to_the_latest_state() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.extend(
        [
            page("10"),
            Gone(410, "Expired", "too old"),
            page("99", cm("z", "98")),
        ]
    )
    fake.watch_scripts.append([Gone(410, "Expired", "too old")])
    r = make(fake, sink)
    await run_until(r, lambda: len(fake.watch_calls) == 2, "the watch after the fallback")

    assert [c["resource_version"] for c in fake.list_calls] == ["0", "10", ""]
    assert sink.calls[-1] == ("replace", (["z"], "99"))
    assert fake.watch_calls[1]["resource_version"] == "99"


async def test_expired_continue_token_rereads_everything_in_one_list() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.extend(
        [
            page("10", cm("a", "1"), cont="tok"),
            Gone(410, "Expired", "continue token expired"),
            page("12", cm("a", "1"), cm("b", "2")),
        ]
    )
    r = make(fake, sink, page_size=1)
    await run_until(r, lambda: bool(fake.watch_calls), "the watch")

    full = fake.list_calls[2]
    assert full["resource_version"] == "0"
    assert "limit" not in full or full["limit"] is None
    assert sink.calls == [("replace", (["a", "b"], "12"))]


async def test_connection_failure_resumes_the_watch_without_relisting() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.append(page("10"))
    fake.watch_scripts.extend(
        [
            [("ADDED", cm("a", "11")), ConnectionResetError("peer went away")],
            [ConnectionRefusedError("apiserver down")],
            [ApiError(429, "TooManyRequests", "watch cache not ready")],
            [("MODIFIED", cm("a", "12"))],
        ]
    )
    r = make(fake, sink)
    await run_until(r, lambda: len(fake.watch_calls) == 5, "the fifth watch")

    assert len(fake.list_calls) == 1
    assert [w["resource_version"] for w in fake.watch_calls] == ["10", "11", "11", "11", "12"]
    assert r.stats.errors == 3
    assert sink.calls == [("replace", ([], "10")), ("added", "a"), ("modified", "a")]


async def test_a_failing_list_is_retried_with_backoff() -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.extend([Forbidden(403, "Forbidden", "no"), page("7")])
    r = make(fake, sink)
    await run_until(r, lambda: bool(fake.watch_calls), "the watch")
    assert [c["resource_version"] for c in fake.list_calls] == ["0", "0"]
    assert isinstance(r.stats.last_error, Forbidden)
    assert r.stats.errors == 1


@pytest.mark.parametrize("rand", [0.0, 1.0])
async def test_watch_timeout_is_random_between_five_and_ten_minutes(rand: float) -> None:
    fake, sink = FakeListWatchClient(), RecordingSink()
    fake.list_answers.append(page("1"))
    r = make(fake, sink, rand=lambda lo, hi: lo + rand * (hi - lo))
    await run_until(r, lambda: bool(fake.watch_calls), "the watch")
    assert fake.watch_calls[0]["timeout_seconds"] == (300 if rand == 0.0 else 600)
