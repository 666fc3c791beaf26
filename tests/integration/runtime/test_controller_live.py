"""Controllers on the real API server: coalescing of rapid updates, one worker per key, retry
backoff and terminal errors, with ConfigMaps as the reconciled resource."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.builder import ControllerBuilder
from dynamo_snapshot.runtime.controller import Controller
from dynamo_snapshot.runtime.errors import NotFound
from dynamo_snapshot.runtime.manager import Manager, ManagerOptions
from dynamo_snapshot.runtime.reader import View
from dynamo_snapshot.runtime.reconcile import Request, Result, TerminalError
from dynamo_snapshot.runtime.resource import CONFIGMAPS
from tests.support import wait_for


def make_manager(kube_api: ApiClient, namespace: str | None, **opts: Any) -> Manager:
    return Manager(
        kube_api,
        ManagerOptions(
            **{
                "metrics_bind_address": "127.0.0.1:0",
                "health_probe_bind_address": "127.0.0.1:0",
                "namespace": namespace,
                "handle_signals": False,
                **opts,
            }
        ),
    )


@contextlib.asynccontextmanager
async def running(mgr: Manager) -> AsyncIterator[Manager]:
    """Run ``mgr`` in the background until the block ends, then stop it gracefully."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(mgr.cache.has_synced, 30, "caches to sync")
        try:
            yield mgr
        finally:
            mgr.stop()


LABELS = {"app": "controller-test"}
SELECTOR = "app=controller-test"  # leaves out the namespace's own kube-root-ca.crt


def cached(mgr: Manager, name: str, namespace: str) -> dict[str, Any] | None:
    """The ConfigMap as the controller's (label-filtered) view holds it, or None."""
    try:
        return mgr.cache.get_nowait(
            CONFIGMAPS, name, namespace, view=View(namespace, labels=SELECTOR)
        )
    except NotFound:
        return None


def idle(ctl: Controller) -> bool:
    return ctl.active_workers == 0 and len(ctl.queue) == 0 and ctl.queue.processing == 0


def configmap(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": LABELS}, "data": data}


async def test_rapid_updates_coalesce_and_reconcile_sees_latest(
    kube_api: ApiClient, namespace: str
) -> None:
    mgr = make_manager(kube_api, namespace)
    seen: list[str] = []
    gate = anyio.Event()
    gate.set()

    async def reconcile(req: Request) -> None:
        obj = cached(mgr, req.name, req.namespace)
        # Recorded, asserted after the run: an assert here would be caught by the controller.
        seen.append(obj["data"]["n"] if obj is not None else "<not in cache>")
        await gate.wait()  # a slow reconcile: it lasts until the test has sent every update

    ctl = ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).complete(reconcile)
    async with running(mgr):
        await mgr.client.create(CONFIGMAPS, configmap("hot", namespace, n="0"))
        await wait_for(lambda: seen == ["0"], 30, "the first reconcile")
        seen.clear()
        gate = anyio.Event()
        for i in range(1, 101):
            await mgr.client.patch_merge(CONFIGMAPS, "hot", {"data": {"n": str(i)}}, namespace)
        # Let the informer deliver every update while the first reconcile is still running.
        await wait_for(
            lambda: (cached(mgr, "hot", namespace) or {})["data"]["n"] == "100",
            30,
            "the cache to see update 100",
        )
        gate.set()
        await wait_for(lambda: seen and seen[-1] == "100", 30, "a reconcile of the latest state")
        await wait_for(lambda: idle(ctl), 10, "the controller to go idle")
    assert 1 <= len(seen) <= 2, f"reconciled {len(seen)} times: {seen}"
    assert seen[-1] == "100"


async def test_two_workers_never_hold_the_same_key(kube_api: ApiClient, namespace: str) -> None:
    mgr = make_manager(kube_api, namespace)
    holding: set[Request] = set()
    violations: list[Request] = []
    max_parallel = 0
    reconciles = 0

    async def reconcile(req: Request) -> None:
        nonlocal max_parallel, reconciles
        if req in holding:
            violations.append(req)
        holding.add(req)
        max_parallel = max(max_parallel, len(holding))
        try:
            await anyio.sleep(0.02)  # the work itself, long enough for events to pile up
        finally:
            holding.discard(req)
            reconciles += 1

    ctl = (
        ControllerBuilder(mgr)
        .for_(CONFIGMAPS, label_selector=SELECTOR)
        .with_workers(4)
        .complete(reconcile)
    )
    async with running(mgr):
        names = [f"cm-{i}" for i in range(3)]
        for name in names:
            await mgr.client.create(CONFIGMAPS, configmap(name, namespace, n="0"))
        for i in range(1, 31):
            async with anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(
                        mgr.client.patch_merge, CONFIGMAPS, name, {"data": {"n": str(i)}}, namespace
                    )
        await wait_for(
            lambda: all((cached(mgr, n, namespace) or {})["data"]["n"] == "30" for n in names),
            30,
            "the cache to see every update",
        )
        await wait_for(lambda: idle(ctl), 30, "the controller to go idle")
    assert violations == []
    assert max_parallel > 1, "the workers never ran in parallel"
    assert reconciles >= len(names)


async def test_errors_back_off_with_growing_spacing(kube_api: ApiClient, namespace: str) -> None:
    mgr = make_manager(kube_api, namespace)
    attempts: list[float] = []

    async def reconcile(req: Request) -> Result:
        attempts.append(time.monotonic())
        if len(attempts) < 9:
            raise RuntimeError(f"transient failure {len(attempts)}")
        return Result()

    ctl = ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).complete(reconcile)
    async with running(mgr):
        await mgr.client.create(CONFIGMAPS, configmap("flaky", namespace))
        await wait_for(lambda: len(attempts) >= 9, 30, "nine attempts")
        await wait_for(lambda: idle(ctl), 10, "the controller to go idle")
        assert ctl.queue.num_requeues(Request(namespace, "flaky")) == 0  # forgotten on success
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # 5 ms doubling: each gap is at least its backoff (small scheduling slack allowed)...
    for i, gap in enumerate(gaps):
        assert gap >= 0.005 * 2**i * 0.9, f"retry {i + 1} came after {gap:.4f}s: {gaps}"
    # ...and the spacing grows: the last gaps dwarf the first ones. A gap can only come late
    # (a busy event loop), never early, so the lower bounds above already say "growing"; this
    # says "not one large constant delay". It compares with the smallest early gap, and asks no
    # strict order of neighbours: one late wake-up on a loaded machine must not fail it.
    assert gaps[-1] > 8 * min(gaps[:3]), gaps


async def test_terminal_error_is_not_retried(kube_api: ApiClient, namespace: str) -> None:
    mgr = make_manager(kube_api, namespace)
    calls: list[str] = []

    async def reconcile(req: Request) -> None:
        obj = cached(mgr, req.name, req.namespace) or {}
        calls.append((obj.get("data") or {}).get("v", ""))
        raise TerminalError(f"{req.key}: value is not supported")

    ctl = ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).complete(reconcile)
    async with running(mgr):
        await mgr.client.create(CONFIGMAPS, configmap("bad", namespace, v="1"))
        await wait_for(lambda: calls == ["1"] and idle(ctl), 30, "the terminal failure")
        req = Request(namespace, "bad")
        # Nothing is scheduled: no delayed retry, no backoff history, no retry counted.
        assert ctl.queue.delayed == 0
        assert len(ctl.queue) == 0
        assert ctl.queue.num_requeues(req) == 0
        retries = mgr.metrics.registry.get_sample_value(
            "workqueue_retries_total", {"name": ctl.name, "controller": ctl.name}
        )
        assert retries == 0
        # A change to the object is a new reason to reconcile.
        await mgr.client.patch_merge(CONFIGMAPS, "bad", {"data": {"v": "2"}}, namespace)
        await wait_for(lambda: calls == ["1", "2"] and idle(ctl), 30, "a reconcile of the change")
    terminal = mgr.metrics.registry.get_sample_value(
        "controller_runtime_terminal_reconcile_errors_total", {"controller": ctl.name}
    )
    assert terminal == 2
