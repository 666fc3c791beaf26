"""The control plane the test session starts is a real one: CRUD, watch, the Job controller and
RBAC all behave as in a cluster."""

from __future__ import annotations

import anyio
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiClient

from tests.support import Impersonate, wait_for


async def test_configmap_create_get_list(kube_api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cm1", labels={"app": "probe"}), data={"k": "v"}
    )
    created = await core.create_namespaced_config_map(namespace, body)
    assert created.metadata.uid

    got = await core.read_namespaced_config_map("cm1", namespace)
    assert got.data == {"k": "v"}
    assert got.metadata.uid == created.metadata.uid

    listed = await core.list_namespaced_config_map(namespace, label_selector="app=probe")
    assert [cm.metadata.name for cm in listed.items] == ["cm1"]


async def test_watch_sees_update(kube_api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    created = await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"), data={"n": "0"})
    )
    seen: list[tuple[str, str]] = []

    async def watch_until_modified() -> None:
        w = watch.Watch()
        async with w.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=created.metadata.resource_version,
            timeout_seconds=30,
        ) as stream:
            async for event in stream:
                # The controller-manager publishes kube-root-ca.crt into every namespace.
                if event["object"].metadata.name != "watched":
                    continue
                seen.append((event["type"], event["object"].data["n"]))
                if event["type"] == "MODIFIED":
                    return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_until_modified)
        await core.patch_namespaced_config_map("watched", namespace, {"data": {"n": "1"}})
    assert ("MODIFIED", "1") in seen


async def test_job_controller_creates_pod(kube_api: ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="probe"),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="main", image="busybox")],
                )
            ),
        ),
    )
    created = await batch.create_namespaced_job(namespace, job)

    async def job_pods() -> list[client.V1Pod]:
        pods = await core.list_namespaced_pod(
            namespace, label_selector="batch.kubernetes.io/job-name=probe"
        )
        return list(pods.items)

    pods = await wait_for(job_pods, 30, "the Job controller to create the Job's pod")
    owner = pods[0].metadata.owner_references[0]
    assert owner.kind == "Job"
    assert owner.uid == created.metadata.uid
    assert owner.controller is True


async def test_serviceaccount_without_rights_is_forbidden(
    impersonate: Impersonate, namespace: str
) -> None:
    async with impersonate(f"system:serviceaccount:{namespace}:nobody") as api:
        with pytest.raises(client.ApiException) as raised:
            await client.CoreV1Api(api).list_namespaced_config_map(namespace)
    assert raised.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(raised.value.body)
