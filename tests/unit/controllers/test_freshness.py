"""Read-your-writes over a cache: a cached copy older than our own last write is stale."""

from __future__ import annotations

from dynamo_snapshot.controllers.freshness import Freshness


def obj(rv: str) -> dict[str, object]:
    return {"metadata": {"resourceVersion": rv}}


def test_older_copy_is_stale_until_the_cache_catches_up() -> None:
    f = Freshness()
    assert not f.stale("ns/a", obj("5"))  # nothing written: never stale
    f.wrote("ns/a", obj("10"))
    assert f.stale("ns/a", obj("9"))
    assert f.stale("ns/a", obj("9"))  # still, until the write shows
    assert not f.stale("ns/b", obj("1"))  # per key
    assert not f.stale("ns/a", obj("10"))
    assert not f.stale("ns/a", obj("9"))  # forgotten once caught up


def test_newer_write_wins_and_forget_and_opaque_versions() -> None:
    f = Freshness()
    f.wrote("k", obj("10"))
    f.wrote("k", obj("7"))  # an older answer never lowers the bar
    assert f.stale("k", obj("8"))
    f.forget("k")
    assert not f.stale("k", obj("8"))
    f.wrote("k", obj("not-a-number"))
    assert not f.stale("k", obj("1"))
    f.wrote("k", obj("3"))
    assert not f.stale("k", obj("opaque"))
