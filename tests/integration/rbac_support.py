"""Namespaces and RBAC made for one test, on the real API server, and removed after it: extra
namespaces, a Role or a ClusterRole bound in chosen namespaces only (a RoleBinding each), and a
cluster-wide grant (ClusterRole + ClusterRoleBinding). Tests then impersonate the subject to see
what a process with exactly those grants can do."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime import NotFound, Resource, RestClient
from dynamo_snapshot.runtime.resource import NAMESPACES
from tests.support import create_test_namespace

RBAC: Final = "rbac.authorization.k8s.io"
ROLES: Final = Resource(RBAC, "v1", "roles", "Role")
ROLE_BINDINGS: Final = Resource(RBAC, "v1", "rolebindings", "RoleBinding")
CLUSTER_ROLES: Final = Resource(RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False)
CLUSTER_ROLE_BINDINGS: Final = Resource(
    RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)

Rule = dict[str, list[str]]


def rule(group: str, resource: str, *verbs: str) -> Rule:
    return {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}


def service_account_user(namespace: str, name: str) -> str:
    """The user name a ServiceAccount's token authenticates as (what tests impersonate)."""
    return f"system:serviceaccount:{namespace}:{name}"


@contextlib.asynccontextmanager
async def extra_namespaces(api: ApiClient, count: int) -> AsyncIterator[list[str]]:
    """`count` fresh namespaces (see `create_test_namespace`), deleted afterwards."""
    client = RestClient(api)
    names: list[str] = []
    try:
        for _ in range(count):
            names.append(await create_test_namespace(client))
        yield names
    finally:
        for name in names:
            with contextlib.suppress(NotFound):
                await client.delete(NAMESPACES, name)


class Grants:
    """RBAC objects made for one subject (a ServiceAccount); `remove` deletes the cluster-scoped
    ones (namespaced ones go with their namespace)."""

    def __init__(self, api: ApiClient, sa_namespace: str, sa_name: str) -> None:
        self.client = RestClient(api)
        self.subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}
        self.user = service_account_user(sa_namespace, sa_name)
        self.tag = uuid.uuid4().hex[:8]
        self._cluster: list[tuple[Resource, str]] = []

    async def in_namespaces(
        self,
        namespaces: Sequence[str],
        *,
        rules: Sequence[Rule] = (),
        cluster_role: str | None = None,
    ) -> None:
        """A RoleBinding in each namespace: to a Role with `rules`, or to `cluster_role` (the
        usual way to grant a ClusterRole's rules in some namespaces only)."""
        for ns in namespaces:
            name = f"test-{self.tag}-{cluster_role or 'role'}"
            if cluster_role is None:
                await self.client.create(
                    ROLES, {"metadata": {"name": name}, "rules": list(rules)}, ns
                )
                ref = {"apiGroup": RBAC, "kind": "Role", "name": name}
            else:
                ref = {"apiGroup": RBAC, "kind": "ClusterRole", "name": cluster_role}
            await self.client.create(
                ROLE_BINDINGS,
                {"metadata": {"name": name}, "roleRef": ref, "subjects": [self.subject]},
                ns,
            )

    async def cluster_wide(self, rules: Sequence[Rule]) -> None:
        """A ClusterRole with `rules`, bound cluster-wide (for cluster-scoped kinds)."""
        name = f"test-{self.tag}-{self.subject['name']}"
        body: dict[str, Any] = {"metadata": {"name": name}, "rules": list(rules)}
        await self.client.create(CLUSTER_ROLES, body, None)
        self._cluster.append((CLUSTER_ROLES, name))
        await self.client.create(
            CLUSTER_ROLE_BINDINGS,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [self.subject],
            },
            None,
        )
        self._cluster.append((CLUSTER_ROLE_BINDINGS, name))

    async def remove(self) -> None:
        for resource, name in reversed(self._cluster):
            with contextlib.suppress(NotFound):
                await self.client.delete(resource, name)
        self._cluster.clear()
