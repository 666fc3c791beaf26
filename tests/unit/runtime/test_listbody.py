"""List bodies split item by item: every shape the apiserver writes, false boundaries inside
items, and the fallbacks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_snapshot.runtime.client import RawList, decode_list
from dynamo_snapshot.runtime.listbody import lazy_list


def body(items: list[dict[str, Any]]) -> bytes:
    meta = {"resourceVersion": "5", "continue": "c"}
    return orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items})


CASES: list[list[dict[str, Any]]] = [
    [],
    [{"metadata": {"name": "a"}}],
    [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}, "spec": {}}],
    # Custom resources start with apiVersion, and so do owner references inside them.
    [
        {
            "apiVersion": "x/v1",
            "metadata": {
                "name": "a",
                "ownerReferences": [{"apiVersion": "v1", "n": 1}, {"apiVersion": "v1", "n": 2}],
            },
        },
        {"apiVersion": "x/v1", "metadata": {"name": "b"}},
    ],
    # The boundary text inside a string, and nested arrays of objects with the same first key.
    [
        {
            "metadata": {"name": "s", "annotations": {"x": '},{"metadata":'}},
            "spec": {"t": [{"metadata": {"n": 1}}, {"metadata": {"n": 2}}]},
        },
        {"metadata": {"name": "t"}},
    ],
]


@pytest.mark.parametrize("items", CASES)
def test_items_come_back_exactly_one_at_a_time(items: list[dict[str, Any]]) -> None:
    lazy = lazy_list(body(items))
    assert lazy is not None
    assert lazy.metadata == {"resourceVersion": "5", "continue": "c"}
    assert list(lazy.items) == items


def test_other_shapes_fall_back() -> None:
    spaced = b'{"kind":"L","metadata":{"resourceVersion":"1"},"items":[ {"a":1} , {"a":2} ]}\n'
    lazy = lazy_list(spaced)
    assert lazy is not None
    assert list(lazy.items) == [{"a": 1}, {"a": 2}]
    assert lazy_list(b'{"kind":"L","metadata":{},"items":null}') is None
    items_first = b'{"items":[{"a":1}],"metadata":{"resourceVersion":"1"}}'
    assert lazy_list(items_first) is None
    decoded = decode_list(items_first)
    assert isinstance(decoded, RawList)
    assert decoded.metadata == {"resourceVersion": "1"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({"metadata": st.dictionaries(st.text(max_size=6), json_values)}),
        max_size=6,
    )
)
def test_any_items_round_trip(items: list[dict[str, Any]]) -> None:
    lazy = lazy_list(body(items))
    assert lazy is not None
    assert list(lazy.items) == items
