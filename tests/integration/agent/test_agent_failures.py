"""One test per failure reason the agent writes (SPEC §4.3), each on real objects: the apiserver
of the session and, where the reason is about a container, a real one in the private containerd.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from dynamo_snapshot.agent.capture import CONTENTS
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import LEASES, PODS, Conflict
from tests.integration.agent.conftest import Bed, RunAgent
from tests.support import wait_for

pytestmark = pytest.mark.node


async def expect_failed(bed: Bed, content: dict[str, Any], reason: str) -> dict[str, Any]:
    cond = await bed.terminal(content, 90)
    assert cond["type"] == c.CONDITION_FAILED, cond
    assert cond["reason"] == reason, cond
    obj = await bed.api.get(CONTENTS, content["metadata"]["name"])
    ready = next(x for x in obj["status"]["conditions"] if x["type"] == c.CONDITION_READY)
    assert ready["status"] == "False"
    return cond


async def test_source_pod_not_found(bed: Bed, run_agent: RunAgent) -> None:
    async with run_agent():
        content = await bed.order("no-such-pod")
        cond = await expect_failed(bed, content, c.REASON_SOURCE_POD_NOT_FOUND)
        assert f"{bed.namespace}/no-such-pod" in cond["message"]


async def test_stale_pod_reference(bed: Bed, run_agent: RunAgent) -> None:
    async with run_agent(), bed.pod(start=False) as pod:
        content = await bed.order(pod, pod_uid="0000-stale")
        cond = await expect_failed(bed, content, c.REASON_STALE_POD_REFERENCE)
        assert pod.uid in cond["message"]


async def test_source_pod_gone(bed: Bed, run_agent: RunAgent) -> None:
    async with run_agent(), bed.pod(start=False) as pod:
        await bed.api.patch_status(
            PODS, pod.name, {"status": {"phase": "Succeeded"}}, bed.namespace
        )
        content = await bed.order(pod)
        cond = await expect_failed(bed, content, c.REASON_SOURCE_POD_GONE)
        assert "Succeeded" in cond["message"]


@pytest.mark.parametrize(
    ("label", "reason"),
    [(None, c.REASON_MISSING_CHECKPOINT_ID), ("bad..id", c.REASON_INVALID_CHECKPOINT_ID)],
)
async def test_checkpoint_id_from_the_pod_label(
    label: str | None, reason: str, bed: Bed, run_agent: RunAgent
) -> None:
    async with run_agent(), bed.pod(start=False, checkpoint_id=label) as pod:
        content = await bed.order(pod)
        await expect_failed(bed, content, reason)
        # The gate ran first: the pod was labelled capture-eligible.
        labels = (await bed.api.get(PODS, pod.name, bed.namespace))["metadata"]["labels"]
        assert labels[c.LABEL_CAPTURE_ELIGIBLE] == c.LABEL_TRUE


async def test_invalid_target_container(bed: Bed, run_agent: RunAgent) -> None:
    async with run_agent(), bed.pod(start=False) as pod:
        content = await bed.order(pod, containers=("sidecar",))
        cond = await expect_failed(bed, content, c.REASON_INVALID_TARGET_CONTAINER)
        assert "'sidecar'" in cond["message"]


async def test_container_not_resolved(bed: Bed, run_agent: RunAgent) -> None:
    """Ready in the apiserver, unknown to the runtime."""
    async with run_agent(), bed.pod(start=False) as pod:
        ghost = "f" * 64
        status = {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "main",
                    "containerID": f"containerd://{ghost}",
                    "image": "x",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {}},
                }
            ],
        }
        await bed.api.patch_status(PODS, pod.name, {"status": status}, bed.namespace)
        content = await bed.order(pod)
        cond = await expect_failed(bed, content, c.REASON_CONTAINER_NOT_RESOLVED)
        assert ghost in cond["message"]


async def test_checkpoint_container_failed_kills_the_rest(bed: Bed, run_agent: RunAgent) -> None:
    async with run_agent(), bed.pod() as pod:
        pod.extra_statuses.append(
            {
                "name": "sidecar",
                "containerID": "containerd://" + "e" * 64,
                "image": "x",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "reason": "Error"}},
            }
        )
        await pod.sync()
        content = await bed.order(pod)
        cond = await expect_failed(bed, content, c.REASON_CHECKPOINT_CONTAINER_FAILED)
        assert "sidecar (exit 3)" in cond["message"]
        await wait_for(pod.exited, 30, "the workload killed")


@pytest.mark.parametrize("hostile", ["dotdot", "symlink"])
async def test_invalid_destination_writes_nothing_outside_the_root(
    hostile: str, bed: Bed, run_agent: RunAgent, storage_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    if hostile == "dotdot":
        base = f"{storage_root}/../../etc"
    else:
        (storage_root / "team").symlink_to(outside)
        base = f"{storage_root}/team"
    annotations = {c.ANNOTATION_STORAGE_BASE_PATH: base}
    async with run_agent(), bed.pod(annotations=annotations) as pod:
        content = await bed.order(pod)
        cond = await expect_failed(bed, content, c.REASON_INVALID_DESTINATION)
        assert base in cond["message"]
    assert os.listdir(outside) == []
    assert sorted(os.listdir(storage_root)) == (["team"] if hostile == "symlink" else [])


async def test_checkpoint_failed_kills_and_thaws_the_container(
    bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    """A CRI dump cut by its deadline: Failed CheckpointFailed, the container killed (so the
    Job does not hang) and never left frozen, nothing at the final path."""
    async with (
        run_agent(method="cri", checkpoint_timeout_seconds=0.05),
        bed.pod(touch_mib=64, checkpoint_id="late") as pod,
    ):
        content = await bed.order(pod)
        cond = await expect_failed(bed, content, c.REASON_CHECKPOINT_FAILED)
        assert "did not finish within" in cond["message"]
        await wait_for(pod.exited, 30, "the workload killed")
    assert not (storage_root / "late" / "versions" / "1").exists()


async def _foreign_lease(bed: Bed, checkpoint_id: str, duration: int) -> dict[str, Any]:
    now = "2026-01-01T00:00:00.000000Z"
    return await bed.api.create(
        LEASES,
        {
            "metadata": {"name": f"{c.CHECKPOINT_LEASE_NAME_PREFIX}{checkpoint_id}"},
            "spec": {
                "holderIdentity": "snapshot-agent/someone-else",
                "leaseDurationSeconds": duration,
                "acquireTime": now,
                "renewTime": now,
            },
        },
        bed.namespace,
    )


async def test_container_changed_while_waiting_for_the_lease(bed: Bed, run_agent: RunAgent) -> None:
    # Held for an hour: the agent waits until the test lets go (deletes it), never on a clock.
    lease = await _foreign_lease(bed, "changed", duration=3600)
    async with run_agent() as (_mgr, agent), bed.pod(checkpoint_id="changed") as pod:
        content = await bed.order(pod)
        name = content["metadata"]["name"]
        await wait_for(agent.tasks.keys, 60, "the capture task waiting on the lease")
        running = agent.tasks.keys()
        assert [r.name for r in running] == [name]
        # The kubelet restarts the container: a new ID in the pod status.
        new_id = "containerd://" + "a" * 64
        pod.override_container_id = new_id

        async def reported() -> bool:
            obj = await bed.api.get(PODS, pod.name, bed.namespace)
            ids = [s.get("containerID") for s in obj["status"].get("containerStatuses") or []]
            return new_id in ids

        await wait_for(reported, 30, "the new container ID in the pod status")
        await bed.api.delete(LEASES, lease["metadata"]["name"], bed.namespace)
        cond = await expect_failed(bed, content, c.REASON_CONTAINER_CHANGED)
        assert "a" * 12 in cond["message"]


async def test_lease_lost_during_the_dump_is_lease_cancelled(
    bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    """Another holder takes the Lease while the (slow, CRI) dump runs: the dump is cancelled,
    Ready is never written, the container is left running and thawed."""
    async with (
        run_agent(method="cri", lease_duration_seconds=3.0, lease_renew_seconds=0.5),
        bed.pod(touch_mib=512, checkpoint_id="stolen") as pod,
    ):
        content = await bed.order(pod)
        staging = storage_root / "stolen" / "versions" / "tmp"
        await wait_for(lambda: staging.is_dir() and any(staging.iterdir()), 60, "dump started")
        lease_name = f"{c.CHECKPOINT_LEASE_NAME_PREFIX}stolen"

        async def steal() -> bool:
            lease = await bed.api.get(LEASES, lease_name, bed.namespace)
            lease["spec"]["holderIdentity"] = "snapshot-agent/thief"
            try:
                await bed.api.update(LEASES, lease, bed.namespace)
            except Conflict:
                return False  # the agent renewed (every 0.5 s) between our read and write
            return True

        await wait_for(steal, 10, "the Lease taken by another holder")
        cond = await expect_failed(bed, content, c.REASON_LEASE_CANCELLED)
        assert "lost" in cond["message"]
        assert not (storage_root / "stolen" / "versions" / "1").exists()
        assert await pod.exit_code() is None, "a lost lease does not kill the workload"
        assert pod.sandbox_config is not None
        parent = pod.sandbox_config.linux.cgroup_parent.lstrip("/")
        state = Path("/sys/fs/cgroup/freezer") / parent / pod.container_id / "freezer.state"
        await wait_for(lambda: state.read_text().strip() == "THAWED", 15, "thawed")
