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
    "workqueue_depth": {"name", "controller", "priority"},
    "controller_runtime_reconcile_timeouts_total": {"controller"},
    "informer_skipped_objects_total": set(),
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
        reg = mgr.metrics.registry

        def seen_all() -> bool:
            total = "controller_runtime_reconcile_total"
            errors = reg.get_sample_value(total, {"controller": ctl.name, "result": "error"})
            polls = reg.get_sample_value(total, {"controller": ctl.name, "result": "requeue_after"})
            return (errors or 0) >= 5 and (polls or 0) >= 1

        # Four retries of "fails" plus the terminal one, and the poll.
        await wait_for(seen_all, 30, "retries of the failing object and the poll")
        assert mgr.metrics_address is not None
        status, text = await scrape(mgr.metrics_address, "/metrics")
    assert status == 200
    found = samples(text)
    for name, labels in CONTROLLER_SERIES.items():
        if not labels:
            # A labelled series with no child yet: only its HELP/TYPE lines are served.
            assert f"# TYPE {name} counter" in text, name
            continue
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
    assert value(found, "controller_runtime_reconcile_time_seconds_count", **c) >= 6
    assert value(found, "workqueue_adds_total", **q) >= 4
    # Three backoff retries of "fails" and the requeue_after of "poll".
    assert value(found, "workqueue_retries_total", **q) >= 4
    assert value(found, "workqueue_queue_duration_seconds_count", **q) >= 6
    assert value(found, "controller_runtime_reconcile_timeouts_total", **c) == 0
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


def bucket(
    found: dict[str, list[tuple[dict[str, str], float]]], metric: str, le: str, **labels: str
) -> float:
    return value(found, f"{metric}_bucket", le=le, **labels)


async def test_gauges_and_histograms_report_what_happened(
    kube_api: ApiClient, namespace: str
) -> None:
    """Real values, not presence: one worker held by a slow reconcile, three keys waiting."""
    mgr = make_manager(kube_api, namespace)
    gate = anyio.Event()

    async def reconcile(req: Request) -> None:
        if req.name == "hold":
            await gate.wait()

    ctl = ControllerBuilder(mgr).named("gauges").for_(CONFIGMAPS, label_selector=SELECTOR)
    ctl.complete(reconcile)
    c = {"controller": "gauges"}
    q = {"name": "gauges", "controller": "gauges"}

    async def scraped() -> dict[str, list[tuple[dict[str, str], float]]]:
        assert mgr.metrics_address is not None
        return samples((await scrape(mgr.metrics_address, "/metrics"))[1])

    async def holding_with_three_waiting() -> bool:
        found = await scraped()
        return (
            value(found, "workqueue_depth", priority="", **q) == 3
            and value(found, "workqueue_longest_running_processor_seconds", **q) >= 0.3
        )

    async with running(mgr):
        await mgr.client.create(CONFIGMAPS, configmap("hold", namespace))
        for name in ("a", "b", "c"):
            await mgr.client.create(CONFIGMAPS, configmap(name, namespace))
        await wait_for(holding_with_three_waiting, 30, "three keys behind the held worker")
        found = await scraped()
        assert value(found, "controller_runtime_active_workers", **c) == 1
        assert value(found, "workqueue_unfinished_work_seconds", **q) >= 0.3
        gate.set()
        await wait_for(lambda: idle(ctl_of(mgr)), 30, "the queue to drain")
        found = await scraped()
    assert value(found, "workqueue_depth", priority="", **q) == 0
    assert value(found, "controller_runtime_active_workers", **c) == 0
    assert value(found, "workqueue_longest_running_processor_seconds", **q) == 0
    rt = "controller_runtime_reconcile_time_seconds"
    count = value(found, f"{rt}_count", **c)
    assert count == 4
    assert bucket(found, rt, "+Inf", **c) == 4
    # "hold" ran at least 0.3 s: it is above the 0.25 s bucket, the others may be below.
    assert bucket(found, rt, "0.25", **c) <= 3
    assert bucket(found, rt, "60.0", **c) == 4
    qd = "workqueue_queue_duration_seconds"
    # a, b and c waited in the queue for as long as "hold" ran (at least 0.3 s).
    assert bucket(found, qd, "0.1", **q) <= 1
    assert bucket(found, qd, "+Inf", **q) == value(found, f"{qd}_count", **q) == 4
    les = sorted(
        (float(lab["le"]), v) for lab, v in found[f"{rt}_bucket"] if lab["controller"] == "gauges"
    )
    assert [v for _, v in les] == sorted(v for _, v in les), "buckets are cumulative"


def ctl_of(mgr: Any) -> Any:
    return next(r for r in mgr.runnables if getattr(r, "name", "") == "gauges")


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
    versions: list[str] = []

    async def reconcile(req: Request) -> None:
        obj = await mgr.client.get(
            CONFIGMAPS, req.name, req.namespace, view=View(namespace, labels=SELECTOR)
        )
        for _ in range(3):
            recorder.warning(obj, "Broken", f"{req.name} is broken")
        recorder.normal(obj, "Seen", "reconciled")
        versions.append(obj["metadata"]["resourceVersion"])

    ControllerBuilder(mgr).for_(CONFIGMAPS, label_selector=SELECTOR).complete(reconcile)
    async with running(mgr):
        await mgr.client.create(CONFIGMAPS, configmap("evt", namespace))
        await wait_for(lambda: len(versions) == 1, 30, "the first reconcile")

        async def events() -> list[dict[str, Any]]:
            found = await mgr.api_reader.list(EVENTS, namespace)
            return [e for e in found if e["involvedObject"]["name"] == "evt"]

        await wait_for(
            lambda: _reasons(events(), {"Broken": 3, "Seen": 1}), 30, "aggregated events"
        )
        # Defect 6: the object changes (a new resourceVersion); the same event about it must
        # still aggregate into the same Event, as client-go's getEventKey does.
        await mgr.client.patch_merge(CONFIGMAPS, "evt", {"data": {"v": "2"}}, namespace)
        await wait_for(lambda: len(versions) == 2, 30, "the reconcile of the change")
        assert versions[0] != versions[1]
        await wait_for(
            lambda: _reasons(events(), {"Broken": 6, "Seen": 2}), 30, "events aggregated again"
        )
        found = await events()
    assert len(found) == 2, [(e["reason"], e["count"]) for e in found]
    broken = next(e for e in found if e["reason"] == "Broken")
    assert broken["type"] == "Warning"
    assert broken["involvedObject"]["kind"] == "ConfigMap"
    assert broken["source"]["component"] == "events-test"
    assert broken["message"] == "evt is broken"


async def _reasons(found: Any, expected: dict[str, int]) -> bool:
    evs = await found
    counts: dict[str, int] = {}
    for e in evs:
        counts[e["reason"]] = counts.get(e["reason"], 0) + int(e.get("count") or 1)
    return counts == expected


async def test_taken_port_fails_run_with_a_plain_error(kube_api: ApiClient, namespace: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mgr = make_manager(kube_api, namespace, health_probe_bind_address=f"127.0.0.1:{port}")
        with pytest.raises(OSError, match=str(port)):
            await mgr.run()
