"""Both controllers watching namespaces {a, b} (`--namespace a,b`), each as its own ServiceAccount
granted the manifests' ClusterRoles through RoleBindings in a and b only (the PodSnapshot
controller also gets the cluster-scoped PodSnapshotContents cluster-wide, which they are). The
start-up checks pass for {a, b} and name c when asked for it; checkpoints in a and b go to Ready;
one in c is never touched; the orphan collector deletes an orphan of a and leaves c's alone."""

from __future__ import annotations

import functools
import uuid

import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.resources import DYNAMO_CHECKPOINTS, POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.cmd import checkpoint_controller, podsnapshot_controller
from dynamo_snapshot.cmd.common import Need, StartupError, preflight
from dynamo_snapshot.runtime import JOBS, Forbidden, NamespaceNotCached, RestClient
from tests.integration.api.crds_fixture import REPO, Kubectl
from tests.integration.controllers.support import (
    Cluster,
    _options,
    checkpoint_body,
    controllers,
    drive_to_ready,
)
from tests.integration.controllers.test_podsnapshot_paths import _orphan
from tests.integration.rbac_support import Grants, extra_namespaces, rule
from tests.support import Impersonate, wait_for

CONTENTS_RULE = rule(c.GROUP, "podsnapshotcontents", "get", "list", "watch", "create", "delete")


@pytest.fixture(scope="session")
def controller_cluster_roles(kube_cluster: Kubectl, crds: list[str]) -> None:
    """The ClusterRoles of manifests/rbac (bound below by RoleBindings only)."""
    for part in ("namespace", "rbac"):
        kube_cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests" / part)
        )


async def test_two_namespaces_with_namespaced_roles_only(
    kube_api: ApiClient,
    impersonate: Impersonate,
    cluster: Cluster,
    controller_cluster_roles: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = cluster.ns
    async with extra_namespaces(kube_api, 2) as (b, other):
        ck = Grants(kube_api, a, "checkpoint-controller")
        ps = Grants(kube_api, a, "podsnapshot-controller")
        try:
            await ck.in_namespaces([a, b], cluster_role="dynamo-checkpoint-controller")
            await ps.in_namespaces([a, b], cluster_role="dynamo-podsnapshot-controller")
            await ps.cluster_wide([CONTENTS_RULE])
            async with (
                impersonate(ck.user) as ck_api,
                impersonate(ps.user) as ps_api,
            ):
                await _start_up_checks(ck_api, ps_api, [a, b], other)
                await _run(kube_api, ck_api, ps_api, a, b, other, caplog)
        finally:
            await ps.remove()


async def _start_up_checks(
    ck_api: ApiClient, ps_api: ApiClient, watched: list[str], other: str
) -> None:
    """Each entrypoint's checks, as it runs them: every verb in every watched namespace."""
    for api, entry in ((ck_api, checkpoint_controller), (ps_api, podsnapshot_controller)):
        # The authorizer learns new bindings from its informers, so grants made a moment ago
        # may not be in force yet: wait for the checks to pass rather than read them once.
        await wait_for(
            functools.partial(_passes, RestClient(api), entry.needs(_options(watched))),
            30,
            f"{entry.__name__} start-up checks for {watched}",
        )
        with pytest.raises(StartupError, match=f"in namespace {other}") as err:
            await preflight(RestClient(api), entry.needs(_options([*watched, other])))
        assert f"in namespace {watched[0]}" not in str(err.value)
        with pytest.raises(StartupError, match="cluster-wide"):
            await preflight(RestClient(api), entry.needs(_options(None)))


async def _run(
    admin: ApiClient,
    ck_api: ApiClient,
    ps_api: ApiClient,
    a: str,
    b: str,
    other: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    in_a, in_b, in_other = Cluster(admin, a), Cluster(admin, b), Cluster(admin, other)
    orphan_a, orphan_other = (f"podsnapshotcontent-{uuid.uuid4()}" for _ in range(2))
    for name, ns in ((orphan_a, a), (orphan_other, other)):
        await in_a.client.create(
            POD_SNAPSHOT_CONTENTS, _orphan(name, ns, "gone", str(uuid.uuid4()))
        )
    bodies = {ns: checkpoint_body(f"ns-{i}") for i, ns in enumerate((a, b, other))}
    async with controllers(
        ck_api, [a, b], podsnapshot_api=ps_api, orphan_grace_period=1.0
    ) as running:
        for where in (in_a, in_b, in_other):
            await where.create_checkpoint(bodies[where.ns])
        for where in (in_a, in_b):
            name = bodies[where.ns]["metadata"]["name"]
            ckpt, _content = await drive_to_ready(where, name, bodies[where.ns])
            assert ckpt["status"]["phase"] == c.PHASE_READY
        # The orphan of a goes after the grace period (confirmed live, in a: allowed).
        await in_a.wait_gone(POD_SNAPSHOT_CONTENTS, orphan_a)
        # Nothing ever happened in the unwatched namespace: no status, no Job, no PodSnapshot.
        name = bodies[other]["metadata"]["name"]
        untouched = await in_other.client.get(DYNAMO_CHECKPOINTS, name, other)
        assert "status" not in untouched or not untouched["status"]
        assert c.LABEL_CHECKPOINT_ID not in (untouched["metadata"].get("labels") or {})
        assert await in_other.items(JOBS) == []
        assert await in_other.items(POD_SNAPSHOTS) == []
        # Its orphan is not this collector's to judge: a sweep skips it (and does not fail).
        assert orphan_other not in await running.collector.collect_once()
        assert await in_other.maybe(POD_SNAPSHOT_CONTENTS, orphan_other) is not None
        # Both caches hold exactly the watched namespaces' objects.
        ck_cache = running.checkpoint.cache
        assert ck_cache.namespaces == frozenset({a, b})
        listed = {o["metadata"]["namespace"] for o in await ck_cache.list(DYNAMO_CHECKPOINTS)}
        assert {a, b} <= listed
        assert other not in listed
        # A request for another namespace would fail its read (NamespaceNotCached), and a missing
        # grant would be Forbidden: neither happened. (Other errors, such as a Conflict retried
        # after a stale read, are allowed: they are not what this test is about.)
        assert _reconcile_errors(caplog, NamespaceNotCached, Forbidden) == []
    await in_a.client.delete(POD_SNAPSHOT_CONTENTS, orphan_other)


async def _passes(client: RestClient, needs: list[Need]) -> bool:
    try:
        await preflight(client, needs)
    except StartupError:
        return False
    return True


def _reconcile_errors(caplog: pytest.LogCaptureFixture, *kinds: type[BaseException]) -> list[str]:
    """The reconcile failures the controllers logged whose cause is one of `kinds`."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.exc_info and isinstance(record.exc_info[1], kinds)
    ]
