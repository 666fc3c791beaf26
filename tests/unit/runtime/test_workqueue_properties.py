"""Work queue invariants under random operation sequences (hypothesis): a key is never handed to
two holders at once, and every add is honoured by a later hand-out, however adds, delayed adds,
hand-outs, completions and time interleave."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_snapshot.runtime.clock import FakeClock
from dynamo_snapshot.runtime.workqueue import WorkQueue

KEYS = st.sampled_from("abcd")
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), KEYS),
        st.tuples(st.just("after"), KEYS, st.floats(0.0, 5.0)),
        st.tuples(st.just("limited"), KEYS),
        st.tuples(st.just("get")),
        st.tuples(st.just("done"), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
    ),
    max_size=60,
)


async def try_get(q: WorkQueue[str]) -> str | None:
    # get() returns without a checkpoint when a key is ready, so a zero deadline only cancels
    # a get that would have to wait.
    with anyio.move_on_after(0):
        return await q.get()
    return None


async def check(ops: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue("prop", clock=clock)
    held: list[str] = []
    owed: set[str] = set()

    def handed(k: str) -> None:
        assert k not in held, f"{k} handed out while held"
        held.append(k)
        owed.discard(k)

    for op in ops:
        match op:
            case ("add", k):
                q.add(k)
                owed.add(k)
            case ("after", k, d):
                q.add_after(k, d)
                owed.add(k)
            case ("limited", k):
                q.add_rate_limited(k)
                owed.add(k)
            case ("get",):
                if (k := await try_get(q)) is not None:
                    handed(k)
            case ("done", i):
                if held:
                    q.done(held.pop(i % len(held)))
            case ("tick", d):
                clock.advance(d)
    # Finish everything: every key still owed must come out.
    clock.advance(10_000)
    while held:
        q.done(held.pop())
    while (k := await try_get(q)) is not None:
        handed(k)
        q.done(held.pop())
        clock.advance(10_000)
    assert owed == set(), f"adds never honoured: {owed}"
    assert q.processing == 0


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_queue_invariants(ops: list[tuple[Any, ...]]) -> None:
    anyio.run(check, ops)
