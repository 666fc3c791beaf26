"""Background tasks per key and the channel source, without a cluster."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from dynamo_snapshot.runtime import BackgroundTasks, Channel, Request, TaskContext
from tests.support import wait_for

A = Request("ns", "a")
B = Request("ns", "b")


def test_channel_keeps_what_was_sent_before_a_subscriber() -> None:
    ch = Channel("c")
    got: list[Request] = []
    ch.send(A)
    ch.subscribe(got.append)
    ch.send(B)
    assert got == [A, B]


async def test_a_task_runs_once_per_key_and_reports_through_the_channel() -> None:
    tasks = BackgroundTasks("t", grace_period=1)
    woken: list[Request] = []
    tasks.channel.subscribe(woken.append)
    release = anyio.Event()

    async def work(ctx: TaskContext) -> str:
        await release.wait()
        return f"done {ctx.request.name}"

    async with anyio.create_task_group() as tg:
        tg.start_soon(tasks.run)
        assert tasks.start(A, work)
        assert not tasks.start(A, work), "a second task for a running key must not start"
        assert tasks.running(A)
        assert tasks.pop_result(A) is None
        release.set()
        await wait_for(lambda: woken == [A], 5, "the finished task to re-enqueue its key")
        assert not tasks.running(A)
        outcome = tasks.pop_result(A)
        assert outcome is not None
        assert outcome.ok
        assert outcome.value == "done a"
        assert tasks.pop_result(A) is None  # once
        tasks.stop()


async def test_a_failing_task_reports_its_error() -> None:
    tasks = BackgroundTasks("t", grace_period=1)
    woken: list[Request] = []
    tasks.channel.subscribe(woken.append)

    async def boom(ctx: TaskContext) -> None:
        raise RuntimeError("disk full")

    async with anyio.create_task_group() as tg:
        tg.start_soon(tasks.run)
        tasks.start(A, boom)
        await wait_for(lambda: woken == [A], 5, "the failed task")
        outcome = tasks.pop_result(A)
        assert outcome is not None
        assert isinstance(outcome.error, RuntimeError)
        assert not outcome.ok
        tasks.stop()


async def test_cancel_gives_the_grace_period_then_cancels() -> None:
    tasks = BackgroundTasks("t", grace_period=0.2)
    saw_request: list[bool] = []
    woken: list[Request] = []
    tasks.channel.subscribe(woken.append)

    async def stubborn(ctx: TaskContext) -> None:
        await ctx.cancelling.wait()
        saw_request.append(True)
        await anyio.sleep_forever()  # ignores the request: cancelled after the grace period

    async def polite(ctx: TaskContext) -> str:
        await ctx.cancelling.wait()
        return "cleaned up"

    async with anyio.create_task_group() as tg:
        tg.start_soon(tasks.run)
        tasks.start(A, stubborn)
        tasks.start(B, polite)
        await anyio.lowlevel.checkpoint()
        assert tasks.cancel(A)
        assert tasks.cancel(B)
        await wait_for(lambda: sorted(woken) == [A, B], 5, "both tasks to end")
        a, b = tasks.pop_result(A), tasks.pop_result(B)
        assert a is not None
        assert a.cancelled
        assert saw_request == [True]
        assert b is not None
        assert b.value == "cleaned up"
        assert not tasks.cancel(A)
        tasks.stop()


async def test_stop_cancels_running_tasks_and_run_returns() -> None:
    tasks = BackgroundTasks("t", grace_period=0.1)
    started = anyio.Event()

    async def forever(ctx: TaskContext) -> None:
        started.set()
        await anyio.sleep_forever()

    tasks.start(A, forever)  # before run(): kept and started when run() begins
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(tasks.run)
            await started.wait()
            tasks.stop()
    assert not tasks.running(A)
    assert not tasks.start(B, forever), "no new tasks once stopping"


@pytest.mark.parametrize("grace", [0.0, 0.05])
async def test_cancel_before_the_task_is_scheduled(grace: float) -> None:
    tasks = BackgroundTasks("t", grace_period=grace)
    woken: list[Request] = []
    tasks.channel.subscribe(woken.append)

    async def forever(ctx: TaskContext) -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        tg.start_soon(tasks.run)
        await anyio.lowlevel.checkpoint()
        tasks.start(A, forever)
        tasks.cancel(A)
        await wait_for(lambda: woken == [A], 5, "the cancelled task to end")
        result = tasks.pop_result(A)
        assert result is not None
        assert result.cancelled
        tasks.stop()
