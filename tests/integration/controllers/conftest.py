"""Fixtures of the controller tests: the CRDs, a Node object for the kubelet stand-in to bind
pods to (the PodGC controller deletes pods bound to a node that does not exist), and the test's
view of the cluster."""

from __future__ import annotations

import contextlib

import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime import NODES, AlreadyExists, RestClient
from tests.integration.api.crds_fixture import Kubectl, install_crds
from tests.integration.controllers.support import NODE, Cluster


@pytest.fixture(scope="session")
def crds(kube_cluster: Kubectl) -> list[str]:
    return install_crds(kube_cluster)


@pytest.fixture
async def cluster(kube_api: ApiClient, namespace: str, crds: list[str]) -> Cluster:
    with contextlib.suppress(AlreadyExists):
        await RestClient(kube_api).create(
            NODES,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
            },
        )
    return Cluster(kube_api, namespace)
