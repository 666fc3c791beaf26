"""Concurrent steps of the capture path: both at once, failing as one, and a pending outcome."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from dynamo_snapshot.agent.together import Pending, both, run_all


async def test_both_runs_the_two_calls_at_once_and_returns_both_results() -> None:
    # Each call waits for the other to have started: run one after the other they never end.
    a_started, b_started = anyio.Event(), anyio.Event()

    async def a() -> str:
        a_started.set()
        await b_started.wait()
        return "a"

    async def b() -> int:
        b_started.set()
        await a_started.wait()
        return 2

    with anyio.fail_after(5):
        assert await both(a, b) == ("a", 2)


async def test_the_first_failure_is_raised_bare_and_cancels_the_others() -> None:
    cancelled = anyio.Event()

    async def waits_forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise LookupError("not found")

    with anyio.fail_after(5):
        with pytest.raises(LookupError, match="not found"):  # not an ExceptionGroup
            await run_all(waits_forever, fails)
    assert cancelled.is_set()


async def test_pending_wakes_its_waiter_with_the_outcome() -> None:
    ok = Pending("labelling")
    seen: list[str] = []

    async def waiter() -> None:
        await ok.wait()
        seen.append("woken")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.lowlevel.checkpoint()
            assert seen == []
            ok.succeeded()
    assert seen == ["woken"]

    bad = Pending("labelling pod ns/p")
    err = LookupError("pod ns/p not found")
    bad.failed(err)
    with pytest.raises(RuntimeError, match="labelling pod ns/p failed") as info:
        await bad.wait()
    assert info.value.__cause__ is err
