"""Predicates, per event type."""

from __future__ import annotations

from typing import Any

from dynamo_snapshot.runtime.predicate import (
    Funcs,
    and_,
    annotations_changed,
    generation_changed,
    labels_changed,
    new_predicate,
    not_,
    or_,
    resource_version_changed,
)


def obj(**meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", **meta}}


def test_generation_changed_filters_updates_only() -> None:
    p = generation_changed()
    assert p.update(obj(generation=1), obj(generation=2))
    assert not p.update(obj(generation=1), obj(generation=1))
    assert p.create(obj())
    assert p.delete(obj())


def test_labels_and_annotations_changed() -> None:
    p = labels_changed()
    assert p.update(obj(labels={"a": "1"}), obj(labels={"a": "2"}))
    assert not p.update(obj(labels={"a": "1"}), obj(labels={"a": "1"}))
    assert not p.update(obj(), obj(labels={}))  # missing and empty are the same
    q = annotations_changed()
    assert q.update(obj(), obj(annotations={"k": "v"}))
    assert not q.update(obj(labels={"a": "1"}), obj(labels={"a": "2"}))


def test_resource_version_changed_drops_resyncs() -> None:
    p = resource_version_changed()
    assert not p.update(obj(resourceVersion="5"), obj(resourceVersion="5"))
    assert p.update(obj(resourceVersion="5"), obj(resourceVersion="6"))


def test_custom_predicates_per_event_type() -> None:
    only_deletes = Funcs(on_create=lambda o: False, on_update=lambda a, b: False)
    assert not only_deletes.create(obj())
    assert not only_deletes.update(obj(), obj())
    assert only_deletes.delete(obj())
    named_x = new_predicate(lambda o: o["metadata"]["name"] == "x")
    assert named_x.create(obj())
    assert named_x.update({"metadata": {"name": "y"}}, obj())
    assert not named_x.delete({"metadata": {"name": "y"}})


def test_combinators() -> None:
    gen, lab = generation_changed(), labels_changed()
    before, after = obj(generation=1, labels={"a": "1"}), obj(generation=1, labels={"a": "2"})
    assert not and_(gen, lab).update(before, after)
    assert or_(gen, lab).update(before, after)
    assert not_(gen).update(before, after)
    assert not not_(gen).create(before)
