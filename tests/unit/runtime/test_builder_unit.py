"""Builder wiring without a cluster: a channel source feeds the queue, background tasks are
added to the manager and cancelled when their For object is deleted, and the For view is kept."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    BackgroundTasks,
    Channel,
    ControllerBuilder,
    Manager,
    ManagerOptions,
    Request,
    TaskContext,
    View,
)
from tests.unit.runtime.test_manager_unit import stand_in_api_client


def cm(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": "1"}}


async def test_channel_requests_reach_the_queue_and_the_for_view_is_kept() -> None:
    mgr = Manager(stand_in_api_client(), ManagerOptions(handle_signals=False))
    channel = Channel("external")
    channel.send(Request("ns", "early"))  # before the controller exists: kept
    ctl = (
        ControllerBuilder(mgr)
        .for_(CONFIGMAPS, namespace="ns", label_selector="app=x")
        .watches_channel(channel)
        .complete(lambda req: anyio.lowlevel.checkpoint())
    )
    channel.send(Request("ns", "late"))
    assert len(ctl.queue) == 2
    assert ctl.for_view == View("ns", "app=x", None)


async def test_background_tasks_are_run_by_the_manager_and_cancelled_on_delete() -> None:
    mgr = Manager(stand_in_api_client(), ManagerOptions(handle_signals=False))
    tasks = BackgroundTasks("work", grace_period=0)
    ctl = (
        ControllerBuilder(mgr)
        .for_(CONFIGMAPS, namespace="ns")
        .with_background_tasks(tasks)
        .complete(lambda req: anyio.lowlevel.checkpoint())
    )
    assert tasks in mgr.runnables
    informer = mgr.cache.informer_for(CONFIGMAPS, "ns")
    ended: list[str] = []

    async def forever(ctx: TaskContext) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            ended.append(ctx.request.name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(tasks.run)
        await informer.reflector.sink.replace([cm("a"), cm("b")], "1")
        assert tasks.start(Request("ns", "a"), forever)
        assert tasks.start(Request("ns", "b"), forever)
        await anyio.wait_all_tasks_blocked()
        informer.reflector.sink.deleted(cm("a"))  # the For object is gone
        await anyio.wait_all_tasks_blocked()
        assert ended == ["a"]
        assert tasks.running(Request("ns", "b"))
        tasks.stop()
    # The cancelled task's key came back to the queue, for the reconciler to see it gone.
    assert Request("ns", "a") in ctl.queue._queue
