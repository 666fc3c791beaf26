"""The gate never dumps (SPEC §4.3): the agent may take its capture decision and the Lease while
the gate's capture-eligible label patch on the pod travels, but it dumps only once that patch
succeeded, and a failed patch dumps nothing (the next reconcile labels and captures).

Everything is real (apiserver, containerd, CRIU) except the answer to that one patch: the real
apiserver answers it in milliseconds, before the capture task gets anywhere, so the ordering under
test cannot happen on it. ``HeldLabelPatchClient`` stands in for the answer only: it holds the
agent's label patch until the test lets it go (to the real apiserver) or fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from dynamo_snapshot.agent import artifact
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import LEASES, PODS, NotFound, Resource, ServiceUnavailable
from tests.integration.agent.conftest import Bed, RunAgent, terminal_condition
from tests.integration.agent.kubelet import PlayedPod
from tests.support import wait_for

pytestmark = pytest.mark.node

PatchMerge = Callable[..., Awaitable[dict[str, Any]]]


class _HeldPatch:
    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.fail = False


class HeldLabelPatchClient:
    """STAND-IN for the apiserver's answer to the gate's label patch (a pod merge patch that
    sets the capture-eligible label): each one waits until :meth:`answer` lets it go to the real
    apiserver or fails it with a ``ServiceUnavailable`` as the API would. Every other call goes
    to the real client untouched."""

    def __init__(self, real: PatchMerge) -> None:
        self._real = real
        self._held: list[_HeldPatch] = []
        self.arrived = 0
        self.sent = 0

    @staticmethod
    def _is_label_patch(resource: Resource, patch: Mapping[str, Any]) -> bool:
        labels = (patch.get("metadata") or {}).get("labels") or {}
        return resource == PODS and c.LABEL_CAPTURE_ELIGIBLE in labels

    async def patch_merge(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        if self._is_label_patch(resource, patch):
            held = _HeldPatch()
            self._held.append(held)
            self.arrived += 1
            await held.answered.wait()
            if held.fail:
                raise ServiceUnavailable(
                    503, "ServiceUnavailable", f"stand-in: label patch of pod {name} failed"
                )
            self.sent += 1
        return await self._real(resource, name, patch, namespace, subresource=subresource)

    def waiting(self) -> int:
        return sum(not h.answered.is_set() for h in self._held)

    def answer(self, *, fail: bool = False) -> None:
        """Answer the oldest label patch still held."""
        held = next(h for h in self._held if not h.answered.is_set())
        held.fail = fail
        held.answered.set()


async def _order_when_ready(bed: Bed, pod: PlayedPod) -> dict[str, Any]:
    """The work order, once the pod reports its container Ready: while the label patch is held,
    no pod event can bring the content back for a decision that found it not yet Ready."""

    async def ready() -> bool:
        obj = await bed.api.get(PODS, pod.name, bed.namespace)
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and all(s.get("ready") for s in statuses)

    await wait_for(ready, 60, f"pod {pod.name} Ready")
    return await bed.order(pod)


async def _lease(bed: Bed, checkpoint_id: str) -> dict[str, Any] | None:
    try:
        return await bed.api.get(
            LEASES, f"{c.CHECKPOINT_LEASE_NAME_PREFIX}{checkpoint_id}", bed.namespace
        )
    except NotFound:
        return None


async def _held_lease(
    bed: Bed, content: dict[str, Any], where: Path, not_uid: str = ""
) -> dict[str, Any]:
    """Once the capture task holds the Lease (one other than ``not_uid``) and has renewed it
    once: it has then held it for a renew period, in which a dump it was going to start without
    the label would have begun. Nothing may have dumped at any point of the wait."""
    checkpoint_id = where.name

    async def fresh() -> dict[str, Any] | None:
        await _assert_nothing_dumped(bed, content, where)
        lease = await _lease(bed, checkpoint_id)
        return lease if lease and lease["metadata"]["uid"] != not_uid else None

    taken: dict[str, Any] = await wait_for(fresh, 60, f"the Lease of {checkpoint_id} taken")
    version = taken["metadata"]["resourceVersion"]

    async def renewed() -> dict[str, Any] | None:
        await _assert_nothing_dumped(bed, content, where)
        lease = await _lease(bed, checkpoint_id)
        changed = lease and lease["metadata"]["resourceVersion"] != version
        return lease if changed else None

    found: dict[str, Any] = await wait_for(renewed, 30, f"the Lease of {checkpoint_id} renewed")
    assert found["metadata"]["uid"] == taken["metadata"]["uid"]
    return found


def _dump_traces(where: Path) -> list[str]:
    """Whatever a dump made for this checkpoint: its staging or final directory."""
    return sorted(str(p) for p in where.rglob("*")) if where.exists() else []


async def _assert_nothing_dumped(bed: Bed, content: dict[str, Any], where: Path) -> None:
    assert _dump_traces(where) == [], "a dump started before the label was on"
    assert await terminal_condition(bed.api, content["metadata"]["name"]) is None
    pod = await bed.api.get(PODS, content["spec"]["source"]["podRef"]["name"], bed.namespace)
    assert c.LABEL_CAPTURE_ELIGIBLE not in (pod["metadata"].get("labels") or {})


async def _assert_captured(bed: Bed, content: dict[str, Any], final: Path) -> None:
    cond = await bed.terminal(content, 120)
    assert cond["type"] == c.CONDITION_READY, cond
    assert cond["reason"] == c.REASON_CAPTURED
    artifact.verify(final, full=True)
    pod = await bed.api.get(PODS, content["spec"]["source"]["podRef"]["name"], bed.namespace)
    assert pod["metadata"]["labels"][c.LABEL_CAPTURE_ELIGIBLE] == c.LABEL_TRUE


async def test_dump_waits_for_the_label_patch(
    bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    checkpoint_id = "label-held"
    async with (
        run_agent(lease_renew_seconds=1.0) as (mgr, _agent),
        bed.pod(checkpoint_id=checkpoint_id) as pod,
    ):
        stand_in = HeldLabelPatchClient(mgr.client.patch_merge)
        mgr.client.patch_merge = stand_in.patch_merge
        content = await _order_when_ready(bed, pod)
        await wait_for(stand_in.waiting, 60, "the label patch sent")
        # The decision ran ahead of the patch's answer: its capture task holds the Lease, but
        # has not dumped (no staging or final directory, no Ready) while it held it.
        await _held_lease(bed, content, storage_root / checkpoint_id)
        assert stand_in.waiting() == 1
        stand_in.answer()
        await _assert_captured(bed, content, storage_root / checkpoint_id / "versions" / "1")
        assert (stand_in.arrived, stand_in.sent) == (1, 1)
        await wait_for(pod.exited, 30, "workload exit")
        assert await pod.exit_code() == 0


async def test_failed_label_patch_dumps_nothing_and_the_retry_captures(
    bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    checkpoint_id = "label-failed"
    where = storage_root / checkpoint_id
    async with (
        run_agent(lease_renew_seconds=1.0) as (mgr, _agent),
        bed.pod(checkpoint_id=checkpoint_id) as pod,
    ):
        stand_in = HeldLabelPatchClient(mgr.client.patch_merge)
        mgr.client.patch_merge = stand_in.patch_merge
        content = await _order_when_ready(bed, pod)
        await wait_for(stand_in.waiting, 60, "the label patch sent")
        first = await _held_lease(bed, content, where)
        stand_in.answer(fail=True)
        # The capture task fails with the patch, releasing its Lease; the content is not
        # Failed (the error is transient): the next reconcile labels the pod again, and its
        # capture takes a new Lease. Held again here, so that nothing can have dumped since.
        await wait_for(lambda: stand_in.arrived == 2, 60, "the label patch retried")
        await _held_lease(bed, content, where, not_uid=first["metadata"]["uid"])
        stand_in.answer()
        await _assert_captured(bed, content, where / "versions" / "1")
        assert (stand_in.arrived, stand_in.sent) == (2, 1)
        await wait_for(pod.exited, 30, "workload exit")
        assert await pod.exit_code() == 0
