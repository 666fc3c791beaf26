"""Both controllers on the real control plane (real Job controller and garbage collector), one test
per path of SPEC §4.1 / §4.2; each asserts the phase, the condition reasons and the Events.

The kubelet and the node agent are played by stand-ins (see support.py) until a real node runs.
"""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.checkpoint_id import resolve_checkpoint_id
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpoint
from dynamo_snapshot.api.resources import DYNAMO_CHECKPOINTS, POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.controllers.jobshape import build_job
from dynamo_snapshot.runtime import JOBS, meta
from tests.integration.controllers.support import (
    TIMEOUT,
    AgentStandIn,
    Cluster,
    KubeletStandIn,
    checkpoint_body,
    checkpoint_id_of,
    condition,
    controllers,
    drive_to_ready,
)
from tests.support import wait_for

# Measured 18 (sometimes 19): creates of the Job, PodSnapshot and content; one Job delete;
# patches of the ID label, 3 (or 4) checkpoint status writes, the finalizer and 2 PodSnapshot
# status writes; 6 Events. Which intermediate states a reconcile observes (each one a status
# message, so a write) depends on timing, and a write the server refuses (a 409, a timeout on a
# loaded machine) is counted too: a few of slack. A reconcile writing in a loop makes dozens.
WRITE_BUDGET = 24


def reasons(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        cond["type"]: (cond["status"], cond["reason"])
        for cond in (obj.get("status") or {}).get("conditions") or ()
    }


async def event_reasons(cluster: Cluster, name: str) -> set[str]:
    return {reason for _type, reason, _msg in await cluster.events(name)}


async def test_happy_path_to_ready(kube_api: ApiClient, cluster: Cluster) -> None:
    body = checkpoint_body("happy")
    ckpt_id = checkpoint_id_of(body)
    async with controllers(kube_api, cluster.ns) as running:
        await cluster.create_checkpoint(body)
        ckpt, content = await drive_to_ready(cluster, "happy", body)
        status = ckpt["status"]
        assert status["checkpointID"] == ckpt_id
        assert status["createdAt"]
        assert status["jobName"] == f"checkpoint-job-{ckpt_id}-1"
        assert status["podSnapshotName"] == "happy"
        assert status["artifactVersion"] == "1"
        assert meta(ckpt)["labels"][c.LABEL_CHECKPOINT_ID] == ckpt_id
        assert reasons(ckpt) == {
            "JobCreated": ("True", "JobCreated"),
            "JobCompleted": ("True", "JobComplete"),
        }
        # The content: named after the PodSnapshot's UID, labelled with the node, back link.
        snap = await cluster.wait_object(POD_SNAPSHOTS, "happy", cluster.ns)
        assert meta(content)["name"] == f"podsnapshotcontent-{meta(snap)['uid']}"
        assert meta(content)["labels"] == {c.LABEL_SNAPSHOT_NODE: "ctrl-test-node"}
        assert content["spec"]["snapshotRef"] == {
            "namespace": cluster.ns,
            "name": "happy",
            "uid": meta(snap)["uid"],
        }
        assert snap["status"]["boundSnapshotContentName"] == meta(content)["name"]
        assert reasons(snap)["Ready"] == ("True", "Captured")
        assert c.FINALIZER_CONTENT_CLEANUP in meta(snap)["finalizers"]
        assert meta(snap)["labels"] == {
            c.LABEL_SNAPSHOT_OWNER: "happy",
            c.LABEL_CHECKPOINT_ID: ckpt_id,
        }
        # After the terminal phase the Job is deleted.
        await cluster.wait_gone(JOBS, status["jobName"], cluster.ns)
        await cluster.wait_event("happy", c.REASON_JOB_DELETED_AFTER_TERMINAL)
        assert {
            c.REASON_JOB_CREATED,
            c.REASON_POD_SNAPSHOT_CREATED,
            c.REASON_CHECKPOINT_READY,
            c.REASON_JOB_DELETED_AFTER_TERMINAL,
        } <= await event_reasons(cluster, "happy")
        # The PodSnapshot's own Events (same name): bound, then captured.
        assert "ctrl-test-node" in await cluster.wait_event("happy", c.REASON_CONTENT_BOUND)
        await cluster.wait_event("happy", c.REASON_CAPTURED)
        # Exactly one of each object: never a second Job, PodSnapshot or content.
        assert len(await cluster.items(POD_SNAPSHOTS)) == 1
        writes = running.writes()
    # API writes of both controllers for this one checkpoint (Events included). The README
    # quotes the figure; the bound catches a reconcile that starts writing in a loop.
    total = sum(writes.values())
    print(f"API writes per checkpoint: {total:g} {writes}")
    assert 12 <= total <= WRITE_BUDGET, writes


async def test_ready_pod_snapshot_with_running_job_stays_creating(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    body = checkpoint_body("waits")
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        await cluster.wait_object(JOBS, job_name, cluster.ns)
        pod = await KubeletStandIn(cluster).run(await cluster.job_pod(job_name))
        await AgentStandIn(cluster).ready(await cluster.content_of("waits"))

        async def seen_ready() -> dict[str, Any] | None:
            obj = await cluster.checkpoint("waits")
            return obj if "is Ready; waiting for Job" in obj["status"].get("message", "") else None

        ckpt = await wait_for(seen_ready, TIMEOUT, "the controller to see the Ready PodSnapshot")
        assert ckpt["status"]["phase"] == c.PHASE_CREATING
        assert reasons(ckpt)["JobCompleted"] == ("False", "JobRunning")
        assert "createdAt" not in ckpt["status"]
        # Only the Job's completion makes it Ready.
        await KubeletStandIn(cluster).finish(pod, 0)
        await cluster.wait_phase("waits", c.PHASE_READY)


async def _fails_with(
    cluster: Cluster, name: str, cond: str, reason: str, words: str
) -> dict[str, Any]:
    ckpt = await cluster.wait_phase(name, c.PHASE_FAILED)
    assert reasons(ckpt)[cond] == ("False", reason)
    assert words in ckpt["status"]["message"]
    message = await cluster.wait_event(name, reason)
    assert words in message
    types = {t for t, r, _m in await cluster.events(name) if r == reason}
    assert types == {"Warning"}
    return ckpt


async def test_pod_snapshot_failure_fails_the_checkpoint(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    body = checkpoint_body("psfail")
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        await cluster.wait_object(JOBS, job_name, cluster.ns)
        await KubeletStandIn(cluster).run(await cluster.job_pod(job_name))
        content = await cluster.content_of("psfail")
        await AgentStandIn(cluster).failed(content, c.REASON_CHECKPOINT_FAILED, "criu said no")
        await _fails_with(
            cluster, "psfail", "JobCompleted", c.REASON_POD_SNAPSHOT_FAILED, "criu said no"
        )
        snap = await cluster.wait_object(POD_SNAPSHOTS, "psfail", cluster.ns)
        assert reasons(snap)["Failed"] == ("True", c.REASON_CHECKPOINT_FAILED)
        assert reasons(snap)["Ready"] == ("False", c.REASON_CHECKPOINT_FAILED)
        await cluster.wait_gone(JOBS, job_name, cluster.ns)


async def test_job_failure_fails_the_checkpoint(kube_api: ApiClient, cluster: Cluster) -> None:
    body = checkpoint_body("jobfail")
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        await cluster.wait_object(JOBS, job_name, cluster.ns)
        kubelet = KubeletStandIn(cluster)
        pod = await kubelet.run(await cluster.job_pod(job_name))
        await kubelet.finish(pod, 1)
        await _fails_with(cluster, "jobfail", "JobCompleted", c.REASON_JOB_FAILED, job_name)
        await cluster.wait_gone(JOBS, job_name, cluster.ns)


async def test_job_deadline_fails_the_checkpoint(kube_api: ApiClient, cluster: Cluster) -> None:
    body = checkpoint_body("deadline", activeDeadlineSeconds=2)
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        job = await cluster.wait_object(JOBS, job_name, cluster.ns)
        assert job["spec"]["activeDeadlineSeconds"] == 2
        await _fails_with(
            cluster, "deadline", "JobCompleted", c.REASON_JOB_DEADLINE_EXCEEDED, "deadline"
        )


async def test_job_deleted_before_completion_fails(kube_api: ApiClient, cluster: Cluster) -> None:
    body = checkpoint_body("jobgone")
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        await cluster.wait_phase("jobgone", c.PHASE_CREATING)
        await cluster.client.delete(JOBS, job_name, cluster.ns, propagation_policy="Background")
        await _fails_with(cluster, "jobgone", "JobCompleted", c.REASON_JOB_DELETED, "deleted")


async def test_missing_target_container_fails_without_a_job(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    body = checkpoint_body("notarget", targetContainerName="worker")
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        await _fails_with(
            cluster, "notarget", "JobCreated", c.REASON_INVALID_POD_TEMPLATE, "'worker'"
        )
        assert await cluster.items(JOBS) == []


async def test_duplicate_checkpoint_ids_fail_the_second_naming_the_first(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    first = checkpoint_body("dup-a", model="test/dup-shared")
    second = checkpoint_body("dup-b", model="test/dup-shared")
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(first)
        await cluster.wait_phase("dup-a", c.PHASE_CREATING)
        await cluster.create_checkpoint(second)
        await _fails_with(
            cluster,
            "dup-b",
            "JobCreated",
            c.REASON_DUPLICATE_CHECKPOINT_ID,
            f"DynamoCheckpoint {cluster.ns}/dup-a",
        )
        jobs = await cluster.items(JOBS)
        assert [meta(j)["labels"][c.LABEL_SNAPSHOT_OWNER] for j in jobs] == ["dup-a"]
        assert (await cluster.checkpoint("dup-a"))["status"]["phase"] == c.PHASE_CREATING


async def test_existing_job_of_ours_is_adopted(kube_api: ApiClient, cluster: Cluster) -> None:
    """A crash between creating the Job and writing status: the next run adopts the Job."""
    body = checkpoint_body("adopt")
    created = await cluster.create_checkpoint(body)
    ckpt = DynamoCheckpoint.from_dict(created)
    job = build_job(ckpt, resolve_checkpoint_id(ckpt))
    await cluster.client.create(JOBS, job, cluster.ns)
    async with controllers(kube_api, cluster.ns):
        obj = await cluster.wait_phase("adopt", c.PHASE_CREATING)
        assert reasons(obj)["JobCreated"] == ("True", "JobCreated")
        message = await cluster.wait_event("adopt", c.REASON_JOB_CREATED)
        assert message.startswith("adopted Job")
        jobs = await cluster.items(JOBS)
        assert [meta(j)["uid"] for j in jobs] == [
            meta(await cluster.client.get(JOBS, job["metadata"]["name"], cluster.ns))["uid"]
        ]


async def test_foreign_pod_snapshot_of_that_name_is_a_conflict(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    body = checkpoint_body("taken")
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    await cluster.client.create(
        POD_SNAPSHOTS,
        {
            "apiVersion": c.API_VERSION,
            "kind": c.KIND_POD_SNAPSHOT,
            "metadata": {"name": "taken"},
            "spec": {"source": {"podRef": {"name": "someone-else", "containers": ["main"]}}},
        },
        cluster.ns,
    )
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        # The pod's existence is enough (SPEC §4.1 step 3): the conflict fails the checkpoint,
        # whose Job and pod are then deleted at once. Neither is waited for nor run here: the
        # Job may live for less than one poll, and a stand-in kubelet would race its deletion.
        ckpt = await _fails_with(
            cluster, "taken", "JobCompleted", c.REASON_POD_SNAPSHOT_CONFLICT, "not controlled"
        )
        assert ckpt["status"]["jobName"] == job_name
        assert reasons(ckpt)["JobCreated"][0] == "True"
        await cluster.wait_gone(JOBS, job_name, cluster.ns)


async def test_artifact_version_bump_starts_over(kube_api: ApiClient, cluster: Cluster) -> None:
    body = checkpoint_body("bump")
    ckpt_id = checkpoint_id_of(body)
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        _, first_content = await drive_to_ready(cluster, "bump", body)
        first_snap_uid = first_content["spec"]["snapshotRef"]["uid"]
        await cluster.client.patch_merge(
            DYNAMO_CHECKPOINTS,
            "bump",
            {"metadata": {"annotations": {c.ANNOTATION_ARTIFACT_VERSION: "2"}}},
            cluster.ns,
        )
        message = await cluster.wait_event("bump", c.REASON_ARTIFACT_VERSION_CHANGED)
        assert "from 1 to 2" in message
        job2 = f"checkpoint-job-{ckpt_id}-2"
        job = await cluster.wait_object(JOBS, job2, cluster.ns)
        template = job["spec"]["template"]["metadata"]
        assert template["annotations"][c.ANNOTATION_ARTIFACT_VERSION] == "2"
        kubelet, agent = KubeletStandIn(cluster), AgentStandIn(cluster)
        pod = await kubelet.run(await cluster.job_pod(job2))

        async def new_content() -> dict[str, Any] | None:
            for item in await cluster.items(POD_SNAPSHOT_CONTENTS):
                ref = item["spec"]["snapshotRef"]
                if ref["namespace"] == cluster.ns and ref["uid"] != first_snap_uid:
                    return item
            return None

        content = await wait_for(new_content, TIMEOUT, "the second attempt's content")
        assert content["spec"]["source"]["podRef"]["uid"] == meta(pod)["uid"]
        await agent.ready(content)
        # The first attempt's content went with its PodSnapshot (the finalizer).
        await cluster.wait_gone(POD_SNAPSHOT_CONTENTS, meta(first_content)["name"])
        await kubelet.finish(pod, 0)
        ckpt = await cluster.wait_phase("bump", c.PHASE_READY)
        assert ckpt["status"]["artifactVersion"] == "2"
        assert ckpt["status"]["jobName"] == job2
        assert len(await cluster.items(POD_SNAPSHOTS)) == 1


async def test_deleting_a_checkpoint_cascades_to_snapshot_and_content(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    body = checkpoint_body("cascade")
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        _, content = await drive_to_ready(cluster, "cascade", body)
        await cluster.client.delete(DYNAMO_CHECKPOINTS, "cascade", cluster.ns)
        # Garbage collection deletes the PodSnapshot (owner reference); its finalizer deletes
        # the content first.
        await cluster.wait_gone(POD_SNAPSHOTS, "cascade", cluster.ns)
        await cluster.wait_gone(POD_SNAPSHOT_CONTENTS, meta(content)["name"])
        await cluster.wait_gone(DYNAMO_CHECKPOINTS, "cascade", cluster.ns)
        # Events are sent in the background: the content may be gone before its Event is.
        message = await cluster.wait_event("cascade", c.REASON_CONTENT_DELETED)
        assert meta(content)["name"] in message


async def test_upstream_shaped_checkpoint_is_honoured(
    kube_api: ApiClient, cluster: Cluster
) -> None:
    body = checkpoint_body(
        "upstream", backoffLimit=3, ttlSecondsAfterFinished=300, sharedMemory={"size": "16Gi"}
    )
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    async with controllers(kube_api, cluster.ns):
        await cluster.create_checkpoint(body)
        job = await cluster.wait_object(JOBS, job_name, cluster.ns)
        assert job["spec"]["backoffLimit"] == 0
        assert "ttlSecondsAfterFinished" not in job["spec"]
        pod_spec = job["spec"]["template"]["spec"]
        shm = [v for v in pod_spec["volumes"] if v["name"] == "shared-memory"]
        assert shm == [
            {"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
        ]
        (main,) = pod_spec["containers"]
        env = {e["name"]: e["value"] for e in main["env"]}
        assert env["SNAPSHOT_CONTROL_DIR"] == env["DYN_SNAPSHOT_CONTROL_DIR"] == "/snapshot-control"
        assert main["readinessProbe"]["exec"]["command"] == [
            "cat",
            "/snapshot-control/ready-for-snapshot",
        ]
        assert "livenessProbe" not in main
        message = await cluster.wait_event("upstream", c.REASON_DEPRECATED_FIELD_IGNORED)
        assert "backoffLimit" in message
        assert "ttlSecondsAfterFinished" in message
        types = {
            t
            for t, r, _ in await cluster.events("upstream")
            if r == c.REASON_DEPRECATED_FIELD_IGNORED
        }
        assert types == {"Warning"}
        ckpt = await cluster.checkpoint("upstream")
        assert condition(ckpt, "JobCreated") is not None
