"""Least privilege, checked against the real apiserver's RBAC authorizer (SPEC §7).

Two views of the same roles:
- Real requests, sent as each ServiceAccount by impersonation: every row says which HTTP status
  the request must get. 403 is "forbidden"; 200/201 (often a server-side dry run, so nothing
  changes) and 404 (a missing object: authorization already passed) are "allowed".
- An exhaustive SubjectAccessReview matrix: for every verb on every resource any binary might
  touch, in a workload namespace and in the system namespace, the answer must be exactly what
  the expected grants below say. A rule added to a role without changing this file fails here.
The expectations are written out by hand, not read from manifests/rbac, so they test the YAML.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import anyio
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from tests.integration.api.rest import MERGE_PATCH, call, group_path, message
from tests.support import Impersonate

SYSTEM_NS = "dynamo-snapshot-system"
AGENT = "dynamo-snapshot-agent"
CHECKPOINT = "dynamo-checkpoint-controller"
PODSNAPSHOT = "dynamo-podsnapshot-controller"
DRY = [("dryRun", "All")]

Grant = dict[tuple[str, str], frozenset[str]]


def _g(*verbs: str) -> frozenset[str]:
    return frozenset(verbs)


EVENTS: Grant = {
    ("", "events"): _g("create", "patch"),
    ("events.k8s.io", "events"): _g("create", "patch"),
}
ELECTION = _g("get", "create", "update", "patch", "delete")

# What each binary may do in any namespace (cluster-wide grants).
EXPECTED: dict[str, Grant] = {
    AGENT: {
        ("nvidia.com", "podsnapshotcontents"): _g("get", "list", "watch"),
        ("nvidia.com", "podsnapshotcontents/status"): _g("patch"),
        ("", "pods"): _g("get", "list", "watch", "patch"),
        ("coordination.k8s.io", "leases"): _g("create", "get", "update", "delete"),
        **EVENTS,
    },
    CHECKPOINT: {
        ("nvidia.com", "dynamocheckpoints"): _g("list", "watch", "patch"),
        ("nvidia.com", "dynamocheckpoints/status"): _g("patch"),
        ("nvidia.com", "dynamocheckpoints/finalizers"): _g("update"),
        ("batch", "jobs"): _g("get", "list", "watch", "create", "delete"),
        ("", "pods"): _g("list", "watch"),
        ("nvidia.com", "podsnapshots"): _g("get", "list", "watch", "create", "delete"),
        **EVENTS,
    },
    PODSNAPSHOT: {
        ("nvidia.com", "podsnapshots"): _g("get", "list", "watch", "patch"),
        ("nvidia.com", "podsnapshots/status"): _g("patch"),
        ("nvidia.com", "podsnapshotcontents"): _g("get", "list", "watch", "create", "delete"),
        ("", "pods"): _g("get"),
        **EVENTS,
    },
}
# Extra grants in the system namespace only: the controllers' leader-election Lease.
EXPECTED_IN_SYSTEM_NS: dict[str, Grant] = {
    AGENT: {},
    CHECKPOINT: {("coordination.k8s.io", "leases"): ELECTION},
    PODSNAPSHOT: {("coordination.k8s.io", "leases"): ELECTION},
}

# bind / escalate / impersonate: the verbs that grant more than they name.
VERBS = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "bind",
    "escalate",
    "impersonate",
]
RESOURCES = sorted(
    {key for grants in EXPECTED.values() for key in grants}
    | {
        ("nvidia.com", "podsnapshotcontents/finalizers"),
        ("nvidia.com", "podsnapshots/finalizers"),
        ("nvidia.com", "dynamocheckpoints"),
        ("", "serviceaccounts"),
        ("", "users"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "roles"),
        ("", "pods/status"),
        ("", "pods/exec"),
        ("", "secrets"),
        ("", "configmaps"),
        ("", "nodes"),
        ("", "serviceaccounts/token"),
        ("apps", "daemonsets"),
        ("coordination.k8s.io", "leases"),
        ("rbac.authorization.k8s.io", "clusterroles"),
    }
)
CLUSTER_SCOPED = {"podsnapshotcontents", "nodes", "clusterroles", "clusterrolebindings", "users"}


def user(sa: str) -> str:
    return f"system:serviceaccount:{SYSTEM_NS}:{sa}"


async def _sar(api: ApiClient, sa: str, group: str, resource: str, verb: str, ns: str) -> bool:
    name, _, sub = resource.partition("/")
    attrs: dict[str, Any] = {"group": group, "resource": name, "verb": verb}
    if sub:
        attrs["subresource"] = sub
    if name not in CLUSTER_SCOPED:
        attrs["namespace"] = ns
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user(sa),
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{SYSTEM_NS}",
                "system:authenticated",
            ],
            "resourceAttributes": attrs,
        },
    }
    status, out = await call(
        api, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body
    )
    assert status == 201, message(out)
    return bool(out["status"].get("allowed"))


@pytest.mark.parametrize("sa", [AGENT, CHECKPOINT, PODSNAPSHOT])
async def test_access_matrix_is_exactly_the_expected_grants(
    kube_api: ApiClient, rbac: str, namespace: str, sa: str
) -> None:
    cases = [
        (key, verb, ns)
        for key, verb, ns in itertools.product(RESOURCES, VERBS, [namespace, SYSTEM_NS])
        # A cluster-scoped resource has no namespace: ask once.
        if not (key[1].partition("/")[0] in CLUSTER_SCOPED and ns == SYSTEM_NS)
    ]
    wrong: list[str] = []
    limiter = anyio.CapacityLimiter(8)

    async def check(key: tuple[str, str], verb: str, ns: str) -> None:
        group, resource = key
        grants = dict(EXPECTED[sa])
        if ns == SYSTEM_NS:
            for k, v in EXPECTED_IN_SYSTEM_NS[sa].items():
                grants[k] = grants.get(k, frozenset()) | v
        want = verb in grants.get(key, frozenset())
        async with limiter:
            got = await _sar(kube_api, sa, group, resource, verb, ns)
        if got != want:
            where = "cluster" if resource in CLUSTER_SCOPED else ns
            wrong.append(f"{verb} {group or 'core'}/{resource} in {where}: {got=} {want=}")

    async with anyio.create_task_group() as tg:
        for key, verb, ns in cases:
            tg.start_soon(check, key, verb, ns)
    assert not wrong, f"{sa}:\n" + "\n".join(sorted(wrong))


# ----- real requests ---------------------------------------------------------------------------


def _content(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_POD_SNAPSHOT_CONTENT,
        "metadata": {"name": name, "labels": {c.LABEL_SNAPSHOT_NODE: "node-a"}},
        "spec": {
            "snapshotRef": {"namespace": ns, "name": "snap", "uid": str(uuid.uuid4())},
            "source": {"nodeName": "node-a", "podRef": {"name": "src", "containers": ["main"]}},
        },
    }


def _podsnapshot(name: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_POD_SNAPSHOT,
        "metadata": {"name": name},
        "spec": {"source": {"podRef": {"name": "src", "containers": ["main"]}}},
    }


def _checkpoint(name: str) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DYNAMO_CHECKPOINT,
        "metadata": {"name": name},
        "spec": {
            "identity": {"model": "m", "backendFramework": "vllm"},
            "job": {"podTemplateSpec": {"spec": {"containers": [{"name": "main", "image": "x"}]}}},
        },
    }


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def _job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]}
            }
        },
    }


def _lease(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": "snapshot-agent/test", "leaseDurationSeconds": 30},
    }


def _event(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "rbac-test-"},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": "src"},
        "reason": "Test",
        "message": "rbac test",
        "type": "Normal",
    }


class World:
    """Objects made by the admin for the impersonated requests to act on."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.content = f"podsnapshotcontent-{uuid.uuid4()}"

    async def create(self, api: ApiClient) -> None:
        for path, body in [
            (group_path(c.PLURAL_POD_SNAPSHOT_CONTENTS), _content(self.content, self.ns)),
            (group_path(c.PLURAL_POD_SNAPSHOTS, self.ns), _podsnapshot("snap")),
            (group_path(c.PLURAL_DYNAMO_CHECKPOINTS, self.ns), _checkpoint("ckpt")),
            (f"/api/v1/namespaces/{self.ns}/pods", _pod("src")),
            (
                f"/api/v1/namespaces/{self.ns}/secrets",
                {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}},
            ),
        ]:
            status, out = await call(api, "POST", path, body)
            assert status == 201, message(out)

    async def delete(self, api: ApiClient) -> None:
        await call(api, "DELETE", group_path(c.PLURAL_POD_SNAPSHOT_CONTENTS, None, self.content))


Row = tuple[str, str, Any, list[tuple[str, str]], str, int]


def _rbac_refusal(body: Any, who: str) -> bool:
    """The RBAC authorizer's 403: reason Forbidden, '<user> cannot <verb> ...' in the message."""
    text = message(body)
    return (
        isinstance(body, dict)
        and body.get("reason") == "Forbidden"
        and f'User "{who}" cannot ' in text
    )


def rows(sa: str, w: World) -> list[Row]:
    """(method, path, body, query, content type, expected status) for one ServiceAccount."""
    ns = w.ns
    J = "application/json"
    content = group_path(c.PLURAL_POD_SNAPSHOT_CONTENTS, None, w.content)
    contents = group_path(c.PLURAL_POD_SNAPSHOT_CONTENTS)
    snaps = group_path(c.PLURAL_POD_SNAPSHOTS, ns)
    ckpts = group_path(c.PLURAL_DYNAMO_CHECKPOINTS, ns)
    pods = f"/api/v1/namespaces/{ns}/pods"
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    secrets = f"/api/v1/namespaces/{ns}/secrets"
    leases_here = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    leases_sys = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NS}/leases"
    events = f"/api/v1/namespaces/{ns}/events"
    ready = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "lastTransitionTime": "2026-11-25T10:00:00Z",
                    "reason": c.REASON_CAPTURED,
                    "message": "captured",
                }
            ]
        }
    }
    label = {"metadata": {"labels": {c.LABEL_CAPTURE_ELIGIBLE: "true"}}}
    id_label = {"metadata": {"labels": {c.LABEL_CHECKPOINT_ID: "x"}}}
    pending = {"status": {"phase": "Pending"}}
    finalizer = {"metadata": {"finalizers": [c.FINALIZER_CONTENT_CLEANUP]}}
    bind = {"status": {"boundSnapshotContentName": w.content}}
    other_label = {"metadata": {"labels": {"a": "b"}}}
    source = f"{c.LABEL_IS_CHECKPOINT_SOURCE}=true"
    common_forbidden: list[Row] = [
        ("GET", secrets, None, [], J, 403),
        ("GET", f"{secrets}/creds", None, [], J, 403),
        ("GET", f"/api/v1/namespaces/{ns}/configmaps", None, [], J, 403),
        ("DELETE", f"{pods}/src", None, DRY, J, 403),
        ("POST", pods, _pod("evil"), DRY, J, 403),
    ]
    if sa == AGENT:
        return [
            *common_forbidden,
            ("GET", content, None, [], J, 200),
            ("GET", contents, None, [("labelSelector", f"{c.LABEL_SNAPSHOT_NODE}=node-a")], J, 200),
            ("PATCH", f"{content}/status", ready, [], MERGE_PATCH, 200),
            ("PUT", f"{content}/status", _content(w.content, ns), [], J, 403),
            ("PATCH", content, label, [], MERGE_PATCH, 403),
            ("POST", contents, _content(f"podsnapshotcontent-{uuid.uuid4()}", ns), DRY, J, 403),
            ("DELETE", content, None, DRY, J, 403),
            ("GET", snaps, None, [], J, 403),
            ("GET", f"{snaps}/snap", None, [], J, 403),
            ("POST", snaps, _podsnapshot("forged"), DRY, J, 403),
            ("PATCH", f"{snaps}/snap/status", ready, [], MERGE_PATCH, 403),
            ("DELETE", f"{snaps}/snap", None, DRY, J, 403),
            ("GET", ckpts, None, [], J, 403),
            ("GET", f"{pods}/src", None, [], J, 200),
            ("GET", pods, None, [], J, 200),
            ("PATCH", f"{pods}/src", label, [], MERGE_PATCH, 200),
            ("POST", leases_here, _lease("checkpoint-lease-x"), DRY, J, 201),
            ("GET", f"{leases_here}/checkpoint-lease-missing", None, [], J, 404),
            ("GET", leases_here, None, [], J, 403),
            ("POST", events, _event(ns), DRY, J, 201),
            ("POST", jobs, _job("j"), DRY, J, 403),
        ]
    if sa == CHECKPOINT:
        return [
            *common_forbidden,
            ("GET", ckpts, None, [], J, 200),
            ("GET", f"{ckpts}/ckpt", None, [], J, 403),
            ("PATCH", f"{ckpts}/ckpt", id_label, DRY, MERGE_PATCH, 200),
            ("PATCH", f"{ckpts}/ckpt/status", pending, DRY, MERGE_PATCH, 200),
            ("POST", ckpts, _checkpoint("other"), DRY, J, 403),
            ("DELETE", f"{ckpts}/ckpt", None, DRY, J, 403),
            ("POST", jobs, _job("checkpoint-job-x-1"), DRY, J, 201),
            ("GET", jobs, None, [], J, 200),
            ("DELETE", f"{jobs}/missing", None, DRY, J, 404),
            ("PATCH", f"{jobs}/missing", other_label, [], MERGE_PATCH, 403),
            ("GET", f"{pods}/src", None, [], J, 403),
            ("GET", pods, None, [("labelSelector", source)], J, 200),
            ("PATCH", f"{pods}/src", label, DRY, MERGE_PATCH, 403),
            ("POST", snaps, _podsnapshot("ckpt"), DRY, J, 201),
            ("GET", snaps, None, [], J, 200),
            ("DELETE", f"{snaps}/snap", None, DRY, J, 200),
            ("PATCH", f"{snaps}/snap/status", ready, DRY, MERGE_PATCH, 403),
            ("GET", contents, None, [], J, 403),
            ("POST", contents, _content(f"podsnapshotcontent-{uuid.uuid4()}", ns), DRY, J, 403),
            ("POST", leases_sys, _lease(CHECKPOINT), DRY, J, 201),
            ("GET", f"{leases_sys}/missing", None, [], J, 404),
            ("POST", leases_here, _lease("x"), DRY, J, 403),
            ("POST", events, _event(ns), DRY, J, 201),
        ]  # fmt: skip
    assert sa == PODSNAPSHOT
    return [
        *common_forbidden,
        ("GET", snaps, None, [], J, 200),
        ("PATCH", f"{snaps}/snap", finalizer, DRY, MERGE_PATCH, 200),
        ("PATCH", f"{snaps}/snap/status", bind, DRY, MERGE_PATCH, 200),
        ("POST", snaps, _podsnapshot("forged"), DRY, J, 403),
        ("DELETE", f"{snaps}/snap", None, DRY, J, 403),
        ("POST", contents, _content(f"podsnapshotcontent-{uuid.uuid4()}", ns), DRY, J, 201),
        ("GET", content, None, [], J, 200),
        ("DELETE", content, None, DRY, J, 200),
        ("PATCH", f"{content}/status", ready, DRY, MERGE_PATCH, 403),
        ("PATCH", content, label, DRY, MERGE_PATCH, 403),
        ("GET", f"{pods}/src", None, [], J, 200),
        ("GET", pods, None, [], J, 403),
        ("PATCH", f"{pods}/src", label, DRY, MERGE_PATCH, 403),
        ("GET", ckpts, None, [], J, 403),
        ("POST", jobs, _job("j"), DRY, J, 403),
        ("POST", leases_sys, _lease(PODSNAPSHOT), DRY, J, 201),
        ("POST", leases_here, _lease("x"), DRY, J, 403),
        ("POST", events, _event(ns), DRY, J, 201),
    ]  # fmt: skip


@pytest.mark.parametrize("sa", [AGENT, CHECKPOINT, PODSNAPSHOT])
async def test_real_requests_get_exactly_the_expected_answer(
    kube_api: ApiClient, impersonate: Impersonate, rbac: str, namespace: str, sa: str
) -> None:
    world = World(namespace)
    await world.create(kube_api)
    wrong: list[str] = []
    try:
        table = rows(sa, world)
        async with impersonate(user(sa)) as api:
            for method, path, body, query, ctype, want in table:
                got, out = await call(api, method, path, body, query=query, content_type=ctype)
                if got != want:
                    wrong.append(f"{method} {path}: got {got}, want {want}: {message(out)[:200]}")
                elif want == 403 and not _rbac_refusal(out, user(sa)):
                    # A 403 from admission or a webhook would hide a missing RBAC rule.
                    wrong.append(f"{method} {path}: 403 but not RBAC's: {message(out)[:200]}")
        assert len(table) >= 20
    finally:
        await world.delete(kube_api)
    assert not wrong, f"{sa}:\n" + "\n".join(wrong)


async def test_agent_lease_lifecycle_and_status_write(
    kube_api: ApiClient, impersonate: Impersonate, rbac: str, namespace: str
) -> None:
    """The agent's own sequence, for real: take the lease, renew it, release it with UID and
    resourceVersion preconditions; write Ready on the content through the status subresource."""
    world = World(namespace)
    await world.create(kube_api)
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    try:
        async with impersonate(user(AGENT)) as api:
            status, lease = await call(api, "POST", leases, _lease("checkpoint-lease-abc"))
            assert status == 201, message(lease)
            status, got = await call(api, "GET", f"{leases}/checkpoint-lease-abc")
            assert status == 200
            assert got["metadata"]["uid"] == lease["metadata"]["uid"]
            got["spec"]["renewTime"] = "2026-11-25T10:00:10.000000Z"
            status, renewed = await call(api, "PUT", f"{leases}/checkpoint-lease-abc", got)
            assert status == 200, message(renewed)
            stale = {
                "preconditions": {
                    "uid": lease["metadata"]["uid"],
                    "resourceVersion": lease["metadata"]["resourceVersion"],
                }
            }
            # The precondition protects a lease someone else renewed: a stale release fails...
            status, out = await call(api, "DELETE", f"{leases}/checkpoint-lease-abc", stale)
            assert status == 409, message(out)
            fresh = {
                "preconditions": {
                    "uid": renewed["metadata"]["uid"],
                    "resourceVersion": renewed["metadata"]["resourceVersion"],
                }
            }
            status, out = await call(api, "DELETE", f"{leases}/checkpoint-lease-abc", fresh)
            assert status == 200, message(out)

            content = group_path(c.PLURAL_POD_SNAPSHOT_CONTENTS, None, world.content)
            status, got = await call(api, "GET", content)
            assert status == 200
            patch = {
                "metadata": {"resourceVersion": got["metadata"]["resourceVersion"]},
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "lastTransitionTime": "2026-11-25T10:00:00Z",
                            "reason": c.REASON_CAPTURED,
                            "message": "captured",
                        }
                    ]
                },
            }
            status, out = await call(
                api, "PATCH", f"{content}/status", patch, content_type=MERGE_PATCH
            )
            assert status == 200, message(out)
            assert out["status"]["conditions"][0]["reason"] == c.REASON_CAPTURED
            # The same optimistic-lock patch again is refused: the resourceVersion moved on.
            status, out = await call(
                api, "PATCH", f"{content}/status", patch, content_type=MERGE_PATCH
            )
            assert status == 409, message(out)
    finally:
        await world.delete(kube_api)
