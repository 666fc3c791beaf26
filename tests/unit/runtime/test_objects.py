"""Pure object helpers: owner references, merge patches, keys."""

from __future__ import annotations

from typing import Any

import pytest

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    JOBS,
    AlreadyOwned,
    has_finalizer,
    key_of,
    merge_patch,
    object_key,
    set_controller_reference,
    split_key,
)


def owner(name: str = "own", uid: str = "u1", ns: str = "ns") -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": name, "namespace": ns, "uid": uid},
    }


def test_controller_reference_is_set_once_and_replaced_for_the_same_owner() -> None:
    child: dict[str, Any] = {"metadata": {"name": "c", "namespace": "ns"}}
    set_controller_reference(owner(), child)
    set_controller_reference(owner(uid="u1"), child)
    refs = child["metadata"]["ownerReferences"]
    assert refs == [
        {
            "apiVersion": "example.com/v1",
            "kind": "Thing",
            "name": "own",
            "uid": "u1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    with pytest.raises(AlreadyOwned):
        set_controller_reference(owner(name="other", uid="u2"), child)


def test_controller_reference_keeps_other_references_and_checks_namespaces() -> None:
    child: dict[str, Any] = {
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "9"}],
        }
    }
    job_owner = {"metadata": {"name": "j", "namespace": "ns", "uid": "7"}}
    set_controller_reference(job_owner, child, JOBS)
    kinds = [r["kind"] for r in child["metadata"]["ownerReferences"]]
    assert kinds == ["X", "Job"]
    assert child["metadata"]["ownerReferences"][1]["apiVersion"] == "batch/v1"
    with pytest.raises(ValueError, match="namespaced"):
        set_controller_reference(owner(ns="a"), {"metadata": {"name": "c", "namespace": "b"}})
    with pytest.raises(ValueError, match="uid"):
        set_controller_reference({"metadata": {"name": "n"}}, {"metadata": {}}, CONFIGMAPS)


def test_merge_patch_turns_old_into_new() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "gone": "x"}
    new = {"a": 1, "b": {"c": 5, "d": 3, "n": {"x": None, "y": 1}}, "e": [1], "f": None}
    assert merge_patch(old, new) == {
        "b": {"c": 5, "n": {"y": 1}},
        "e": [1],
        "gone": None,
        "f": None,
    }
    assert merge_patch(old, old) == {}


def test_keys_and_finalizers() -> None:
    assert object_key("ns", "a") == "ns/a" == key_of({"metadata": {"name": "a", "namespace": "ns"}})
    assert object_key(None, "a") == "a" == key_of({"metadata": {"name": "a"}})
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("a") == (None, "a")
    assert has_finalizer({"metadata": {"finalizers": ["x/y"]}}, "x/y")
    assert not has_finalizer({"metadata": {}}, "x/y")
