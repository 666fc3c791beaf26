"""A small reconciler written with the whole toolkit, on the real API server.

``Widget`` (a CRD of this test, with a status subresource) asks for some long work. The
reconciler, in SPEC-like step order:

1. reads the Widget from the cache (``mgr.client``); gone → nothing to do;
2. being deleted → cancels the Widget's background task, and once it has ended removes its
   finalizer;
3. adds its finalizer;
4. finds its ConfigMap through an index (ConfigMaps by controlling Widget) and creates it, with a
   controller reference, when missing;
5. starts the long work as a background task (it holds a Lease guard while it works), unless
   one runs; when the task has finished, its outcome (delivered through the channel source)
   goes to the status;
6. writes the status only when it changed.

Everything the reconciler observes is recorded and asserted after the run (an assert inside a
reconcile would be swallowed by the controller).
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime import (
    CONFIGMAPS,
    CUSTOMRESOURCEDEFINITIONS,
    LEASES,
    AlreadyExists,
    BackgroundTasks,
    ControllerBuilder,
    Manager,
    NotFound,
    Request,
    Resource,
    Result,
    TaskContext,
    add_finalizer,
    has_finalizer,
    lease_guard,
    meta,
    patch_status_if_changed,
    remove_finalizer,
    set_controller_reference,
)
from tests.integration.runtime.test_controller_live import make_manager, running
from tests.support import wait_for

GROUP = "example.dynamo-snapshot.test"
WIDGETS = Resource(GROUP, "v1", "widgets", "Widget")
FINALIZER = f"{GROUP}/cleanup"
OWNER_INDEX = "controlling-widget"


def widget_crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


async def ensure_crd(mgr: Manager) -> None:
    with contextlib.suppress(AlreadyExists):  # another test of this session made it
        await mgr.live.create(CUSTOMRESOURCEDEFINITIONS, widget_crd())

    async def established() -> bool:
        crd = await mgr.api_reader.get(CUSTOMRESOURCEDEFINITIONS, f"widgets.{GROUP}")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    await wait_for(established, 30, "the Widget CRD to be established")


def controlling_widget(obj: Any) -> list[str]:
    return [
        ref["name"]
        for ref in meta(obj).get("ownerReferences") or ()
        if ref.get("controller") and ref.get("kind") == "Widget"
    ]


class Example:
    """The reconciler, and what it observed."""

    def __init__(self, mgr: Manager, namespace: str) -> None:
        self.mgr = mgr
        self.namespace = namespace
        self.tasks = BackgroundTasks("widget-work", grace_period=5.0)
        self.gates: dict[str, anyio.Event] = {}
        self.status_writes: list[tuple[str, dict[str, Any]]] = []
        self.task_log: list[tuple[str, str]] = []
        self.lease_holders: dict[str, str] = {}
        self.reconciles_after_poke = 0

    def lease_name(self, req: Request) -> str:
        return f"widget-{req.name}"

    async def work(self, ctx: TaskContext) -> int:
        """The long work: holds a Lease while it waits for the test (or for cancellation)."""
        req = ctx.request
        self.task_log.append(("start", req.name))
        async with lease_guard(
            self.mgr.client, self.lease_name(req), req.namespace, duration=6.0, identity="example"
        ) as held:
            self.lease_holders[req.name] = held.identity
            gate = self.gates.setdefault(req.name, anyio.Event())
            try:
                with anyio.move_on_after(60):
                    async with anyio.create_task_group() as tg:

                        async def first(ev: anyio.Event) -> None:
                            await ev.wait()
                            tg.cancel_scope.cancel()

                        tg.start_soon(first, gate)
                        tg.start_soon(first, ctx.cancelling)
            finally:
                self.task_log.append(("cancelling" if ctx.cancel_requested else "end", req.name))
            if ctx.cancel_requested:
                return -1  # stopped early, cleanly, inside the grace period
        return 42

    async def reconcile(self, req: Request) -> Result | None:
        client = self.mgr.client
        # 1. the Widget
        try:
            widget = await client.get(WIDGETS, req.name, req.namespace)
        except NotFound:
            return None
        # 2. deletion: stop the work, then let the Widget go
        if meta(widget).get("deletionTimestamp"):
            if self.tasks.running(req):
                self.tasks.cancel(req)
                return None  # the task's end re-enqueues this key
            self.tasks.pop_result(req)
            await remove_finalizer(client, WIDGETS, widget, FINALIZER)
            return None
        if (meta(widget).get("annotations") or {}).get("poke"):
            self.reconciles_after_poke += 1
        # 3. finalizer
        widget = await add_finalizer(client, WIDGETS, widget, FINALIZER)
        # 4. the owned ConfigMap, found through the index
        owned = await client.list(CONFIGMAPS, req.namespace, index=(OWNER_INDEX, req.name))
        if not owned:
            cm: dict[str, Any] = {
                "metadata": {"name": f"{req.name}-config", "namespace": req.namespace},
                "data": {"size": str((widget.get("spec") or {}).get("size", 0))},
            }
            set_controller_reference(widget, cm, WIDGETS)
            with contextlib.suppress(AlreadyExists):  # made by an earlier pass, not yet cached
                await client.create(CONFIGMAPS, cm)
        # 5. the long work
        status = dict(widget.get("status") or {})
        outcome = self.tasks.pop_result(req)
        if outcome is not None:
            if outcome.ok:
                status.update(phase="Done", result=outcome.value)
            else:
                status.update(phase="Failed", message=str(outcome.error or "cancelled"))
        elif status.get("phase") not in ("Done", "Failed") and not self.tasks.running(req):
            self.tasks.start(req, self.work)
            status["phase"] = "Working"
        # 6. the status, only when it changed
        written = await patch_status_if_changed(client, WIDGETS, widget, status)
        if meta(written).get("resourceVersion") != meta(widget).get("resourceVersion"):
            self.status_writes.append((req.name, dict(written.get("status") or {})))
        return None


async def live_widget(mgr: Manager, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return await mgr.api_reader.get(WIDGETS, name, namespace)
    except NotFound:
        return None


async def lease_exists(mgr: Manager, name: str, namespace: str) -> bool:
    try:
        await mgr.api_reader.get(LEASES, name, namespace)
    except NotFound:
        return False
    return True


async def test_example_reconciler_uses_the_whole_toolkit(
    kube_api: ApiClient, namespace: str
) -> None:
    mgr = make_manager(kube_api, namespace)
    await ensure_crd(mgr)
    ex = Example(mgr, namespace)
    mgr.add_index(CONFIGMAPS, OWNER_INDEX, controlling_widget)
    ctl = (
        ControllerBuilder(mgr)
        .named("widgets")
        .for_(WIDGETS)
        .owns(CONFIGMAPS)
        .with_background_tasks(ex.tasks)
        .with_workers(2)
        .complete(ex.reconcile)
    )
    async with running(mgr):
        await mgr.client.create(
            WIDGETS, {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1"},
                      "spec": {"size": 3}}, namespace
        )  # fmt: skip

        async def phase(name: str, expected: str) -> bool:
            w = await live_widget(mgr, name, namespace)
            return bool(w and (w.get("status") or {}).get("phase") == expected)

        await wait_for(lambda: phase("w1", "Working"), 30, "w1 to be Working")
        await wait_for(lambda: lease_exists(mgr, "widget-w1", namespace), 30, "w1's lease")
        w1 = await live_widget(mgr, "w1", namespace)
        assert w1 is not None
        assert has_finalizer(w1, FINALIZER)
        cm = await mgr.api_reader.get(CONFIGMAPS, "w1-config", namespace)
        [ref] = cm["metadata"]["ownerReferences"]
        assert ref["uid"] == w1["metadata"]["uid"]
        assert ref["controller"] is True
        assert ref["blockOwnerDeletion"] is True
        assert cm["data"] == {"size": "3"}
        lease = await mgr.api_reader.get(LEASES, "widget-w1", namespace)
        assert lease["spec"]["holderIdentity"] == "example"

        # The work finishes: its key comes back through the channel, the status says Done and
        # the lease guard released (deleted) its Lease.
        await wait_for(lambda: "w1" in ex.gates, 10, "the task to wait on its gate")
        ex.gates["w1"].set()
        await wait_for(lambda: phase("w1", "Done"), 30, "w1 to be Done")
        await wait_for(
            lambda: _not(lease_exists(mgr, "widget-w1", namespace)), 30, "w1's lease to go"
        )
        done = await live_widget(mgr, "w1", namespace)
        assert done is not None
        assert done["status"]["result"] == 42
        # A change that does not alter the status: reconciled, but no status write.
        await mgr.client.patch_merge(
            WIDGETS, "w1", {"metadata": {"annotations": {"poke": "1"}}}, namespace
        )

        async def poked_and_settled() -> bool:
            w = await mgr.cache.get(WIDGETS, "w1", namespace)
            return bool((w["metadata"].get("annotations") or {}).get("poke")) and not (
                ex.tasks.running(Request(namespace, "w1"))
            )

        await wait_for(poked_and_settled, 30, "the annotation in the cache")
        await wait_for(lambda: len(ctl.queue) == 0 and ctl.active_workers == 0, 30, "idle")

        # Deleting a Widget whose work runs cancels the work, then the finalizer goes.
        await mgr.client.create(
            WIDGETS, {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w2"},
                      "spec": {"size": 1}}, namespace
        )  # fmt: skip
        await wait_for(lambda: ("start", "w2") in ex.task_log, 30, "w2's work to start")
        await wait_for(lambda: lease_exists(mgr, "widget-w2", namespace), 30, "w2's lease")
        await mgr.client.delete(WIDGETS, "w2", namespace)
        await wait_for(lambda: _is_none(live_widget(mgr, "w2", namespace)), 30, "w2 to go")
        await wait_for(
            lambda: _not(lease_exists(mgr, "widget-w2", namespace)), 30, "w2's lease to go"
        )
    assert ("cancelling", "w2") in ex.task_log
    assert ("end", "w2") not in ex.task_log
    # w1 was reconciled again after the poke, and did not write its unchanged status.
    w1_writes = [s["phase"] for n, s in ex.status_writes if n == "w1"]
    assert w1_writes == ["Working", "Done"], w1_writes
    assert ex.reconciles_after_poke > 0


async def _not(value: Any) -> bool:
    return not await value


async def _is_none(value: Any) -> bool:
    return await value is None
