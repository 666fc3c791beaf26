"""The manager on the real API server: /metrics with controller-runtime's series, /healthz and
/readyz, the cache-sync error for missing RBAC, graceful shutdown, and Events."""

from __future__ import annotations

import socket
import time
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from kubernetes_asyncio.client import ApiClient
from prometheus_client.parser import text_string_to_metric_families

from dynamo_snapshot.runtime.builder import ControllerBuilder
from dynamo_snapshot.runtime.cache import CacheSyncTimeout
from dynamo_snapshot.runtime.reader import View
from dynamo_snapshot.runtime.reconcile import Request, Result, TerminalError
from dynamo_snapshot.runtime.resource import CONFIGMAPS, EVENTS
from tests.integration.runtime.test_controller_live import (
    SELECTOR,
    configmap,
    idle,
    make_manager,
    running,
)
from tests.support import Impersonate, wait_for

CONTROLLER_SERIES = {
    "controller_runtime_reconcile_total": {"controller", "result"},
    "controller_runtime_reconcile_errors_total": {"controller"},
    "controller_runtime_terminal_reconcile_errors_total": {"controller"},
    "controller_runtime_reconcile_panics_total": {"controller"},
    "controller_runtime_reconcile_time_seconds_bucket": {"controller", "le"},
    "controller_runtime_reconcile_time_seconds_count": {"controller"},
    "controller_runtime_max_concurrent_reconciles": {"controller"},
    "controller_runtime_active_workers": {"controller"},
    "workqueue_depth": {"name", "controller"},
    "workqueue_adds_total": {"name", "controller"},
    "workqueue_queue_duration_seconds_bucket": {"name", "controller", "le"},
    "workqueue_work_duration_seconds_bucket": {"name", "controller", "le"},
    "workqueue_unfinished_work_seconds": {"name", "controller"},
    "workqueue_longest_running_processor_seconds": {"name", "controller"},
    "workqueue_retries_total": {"name", "controller"},
    "leader_election_master_status": {"name"},
    "rest_client_requests_total": {"code", "method", "host"},
}


async def scrape(address: tuple[str, int], path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{address[0]}:{address[1]}{path}") as resp,
    ):
        return resp.status, await resp.text()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(
    found: dict[str, list[tuple[dict[str, str], float]]], metric: str, **labels: str
) -> float:
    matches = [
        v for lab, v in found.get(metric, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert matches, f"no sample {metric}{labels}"
    return sum(matches)


async def test_metrics_endpoint_serves_controller_runtime_series(
    kube_api: ApiClient, namespace: str
) -> None:
    mgr = make_manager(
        kube_api,
        namespace,
        leader_election=True,
        leader_election_id="metrics-test",
        leader_election_namespace=namespace,
    )

    async def reconcile(req: Request) -> Result:
        if req.name == "fails":
            raise RuntimeError("always fails")
        if req.name == "terminal":
            raise TerminalError("not supported")
        if req.name == "poll":
            return Result(requeue_after=3600)
        return Result()

    ctl = (
        ControllerBuilder(mgr)
        .named("metrics-test")
        .for_(CONFIGMAPS, label_selector=SELECTOR)
        .with_workers(2)
        .complete(reconcile)
    )
    async with running(mgr):
        for name in ["ok", "fails", "terminal", "poll"]:
            await mgr.client.create(CONFIGMAPS, configmap(name, namespace))
        errors = ("controller_runtime_reconcile_errors_total", {"controller": ctl.name})
        await wait_for(
            lambda: (mgr.metrics.registry.get_sample_value(errors[0], errors[1]) or 0) >= 4,
            30,
            "retries of the failing object",
        )
        assert mgr.metrics_address is not None
        status, text = await scrape(mgr.metrics_address, "/metrics")
    assert status == 200
    found = samples(text)
    for name, labels in CONTROLLER_SERIES.items():
        assert name in found, f"{name} missing from /metrics"
        assert any(set(lab) == labels for lab, _ in found[name]), (name, found[name][:3])
    c = {"controller": "metrics-test"}
    q = {"name": "metrics-test", "controller": "metrics-test"}
    assert value(found, "controller_runtime_reconcile_total", result="success", **c) >= 1
    assert value(found, "controller_runtime_reconcile_total", result="requeue_after", **c) >= 1
    assert value(found, "controller_runtime_reconcile_total", result="error", **c) >= 4
    assert value(found, "controller_runtime_reconcile_errors_total", **c) >= 4
    assert value(found, "controller_runtime_terminal_reconcile_errors_total", **c) == 1
    assert value(found, "controller_runtime_reconcile_panics_total", **c) == 0
    assert value(found, "controller_runtime_max_concurrent_reconciles", **c) == 2
    assert 0 <= value(found, "controller_runtime_active_workers", **c) <= 2
    assert value(found, "controller_runtime_reconcile_time_seconds_count", **c) >= 6
    assert value(found, "workqueue_adds_total", **q) >= 4
    assert value(found, "workqueue_retries_total", **q) >= 3
    assert value(found, "workqueue_queue_duration_seconds_count", **q) >= 6
    assert value(found, "workqueue_depth", **q) >= 0
    assert value(found, "workqueue_longest_running_processor_seconds", **q) >= 0
    assert value(found, "leader_election_master_status", name="metrics-test") == 1
    host = mgr.client.host
    assert value(found, "rest_client_requests_total", code="200", method="GET", host=host) >= 2
    assert value(found, "rest_client_requests_total", code="201", method="POST", host=host) >= 4
    assert "process_resident_memory_bytes" in found
    # After shutdown the lease is released and the gauge says so.
    assert (
        mgr.metrics.registry.get_sample_value(
            "leader_election_master_status", {"name": "metrics-test"}
        )
        == 0
    )
    assert idle(ctl) or ctl.stopping


async def test_readyz_fails_until_synced_and_sync_timeout_names_the_resource(
    impersonate: Impersonate, namespace: str
) -> None:
    # A user with no RBAC at all: the ConfigMap informer can never list.
    async with impersonate("no-rbac-user") as api:
        mgr = make_manager(api, namespace, cache_sync_timeout=3.0)
        ControllerBuilder(mgr).for_(CONFIGMAPS).complete(lambda req: anyio.lowlevel.checkpoint())
        statuses: dict[str, int] = {}

        async def probe() -> None:
            await wait_for(lambda: mgr.health_address is not None, 10, "the health server")
            assert mgr.health_address is not None
            statuses["readyz"], _ = await scrape(mgr.health_address, "/readyz")
            statuses["healthz"], _ = await scrape(mgr.health_address, "/healthz")

        errors: list[CacheSyncTimeout] = []

        async def run() -> None:
            try:
                await mgr.run()
            except CacheSyncTimeout as err:
                errors.append(err)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe)
            tg.start_soon(run)
    assert len(errors) == 1, "run() did not raise CacheSyncTimeout"
    assert time.monotonic() - started < 30
    assert f"configmaps in {namespace}" in str(errors[0])
    assert "RBAC" in str(errors[0])
    assert statuses == {"readyz": 500, "healthz": 200}


async def test_readyz_passes_once_synced(kube_api: ApiClient, namespace: str) -> None:
    mgr = make_manager(kube_api, namespace)
    ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).complete(
        lambda req: anyio.lowlevel.checkpoint()
    )
    async with running(mgr):
        assert mgr.health_address is not None
        await wait_for(lambda: _status(mgr.health_address, "/readyz", 200), 10, "/readyz to pass")
        status, text = await scrape(mgr.health_address, "/readyz?verbose")
        assert status == 200
        assert "[+]informers ok" in text


async def _status(address: Any, path: str, expected: int) -> bool:
    status, _ = await scrape(address, path)
    return status == expected


async def test_graceful_shutdown_finishes_in_flight_then_cancels_stragglers(
    kube_api: ApiClient, namespace: str
) -> None:
    mgr = make_manager(kube_api, namespace, graceful_shutdown_timeout=1.0)
    started: set[str] = set()
    finished: set[str] = set()
    cancelled: set[str] = set()
    release_quick = anyio.Event()

    async def reconcile(req: Request) -> None:
        started.add(req.name)
        try:
            if req.name == "quick":
                await release_quick.wait()
            else:
                await anyio.sleep_forever()  # never finishes on its own
            finished.add(req.name)
        except anyio.get_cancelled_exc_class():
            cancelled.add(req.name)
            raise

    ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).with_workers(2).complete(
        reconcile
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(mgr.run)
        await wait_for(mgr.cache.has_synced, 30, "caches to sync")
        for name in ["quick", "stuck"]:
            await mgr.client.create(CONFIGMAPS, configmap(name, namespace))
        await wait_for(lambda: started == {"quick", "stuck"}, 30, "both reconciles to start")
        stop_at = time.monotonic()
        mgr.stop()
        release_quick.set()
    took = time.monotonic() - stop_at
    assert finished == {"quick"}
    assert cancelled == {"stuck"}
    assert 1.0 <= took < 5.0, took


async def test_events_are_recorded_and_aggregated(kube_api: ApiClient, namespace: str) -> None:
    mgr = make_manager(kube_api, namespace)
    recorder = mgr.event_recorder("events-test")
    done = anyio.Event()

    async def reconcile(req: Request) -> None:
        obj = await mgr.client.get(
            CONFIGMAPS, req.name, req.namespace, view=View(namespace, labels=SELECTOR)
        )
        for _ in range(3):
            recorder.warning(obj, "Broken", f"{req.name} is broken")
        recorder.normal(obj, "Seen", "reconciled")
        done.set()

    ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).complete(reconcile)
    async with running(mgr):
        await mgr.client.create(CONFIGMAPS, configmap("evt", namespace))
        await done.wait()

        async def events() -> dict[str, Any]:
            found = await mgr.api_reader.list(EVENTS, namespace)
            return {e["reason"]: e for e in found if e["involvedObject"]["name"] == "evt"}

        await wait_for(
            lambda: _reasons(events(), {"Broken": 3, "Seen": 1}), 30, "aggregated events"
        )
    broken = (await events())["Broken"]
    assert broken["type"] == "Warning"
    assert broken["involvedObject"]["kind"] == "ConfigMap"
    assert broken["source"]["component"] == "events-test"
    assert broken["message"] == "evt is broken"


async def _reasons(found: Any, expected: dict[str, int]) -> bool:
    evs = await found
    return {r: e.get("count") for r, e in evs.items()} == expected


async def test_taken_port_fails_run_with_a_plain_error(kube_api: ApiClient, namespace: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mgr = make_manager(kube_api, namespace, health_probe_bind_address=f"127.0.0.1:{port}")
        with pytest.raises(OSError, match=str(port)):
            await mgr.run()
