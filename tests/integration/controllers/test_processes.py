"""The two console scripts as real processes: kill -9 at several points of the happy path and
restart converges to exactly one Job, one PodSnapshot and one content; start-up errors are one
line on stderr with exit status 1 and no traceback."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.resources import POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.cmd.common import Need, StartupError, preflight
from dynamo_snapshot.runtime import JOBS, LEASES, SERVICEACCOUNTS, Resource, RestClient, meta
from tests.integration.controllers.processes import (
    CHECKPOINT,
    PODSNAPSHOT,
    ControllerProcess,
    script,
)
from tests.integration.controllers.support import (
    TIMEOUT,
    AgentStandIn,
    Cluster,
    KubeletStandIn,
    checkpoint_body,
    checkpoint_id_of,
)
from tests.support import wait_for


def kubeconfig_of(kube_cluster: Any) -> Path:
    return Path(kube_cluster.kubeconfig)


async def test_kill_9_at_every_step_converges_to_one_of_each(
    kube_api: ApiClient, kube_cluster: Any, cluster: Cluster, tmp_path: Path
) -> None:
    kc = kubeconfig_of(kube_cluster)
    ck = ControllerProcess(CHECKPOINT, kc, cluster.ns, tmp_path / "ck.log")
    ps = ControllerProcess(PODSNAPSHOT, kc, cluster.ns, tmp_path / "ps.log")
    body = checkpoint_body("crashy")
    job_name = f"checkpoint-job-{checkpoint_id_of(body)}-1"
    kubelet, agent = KubeletStandIn(cluster), AgentStandIn(cluster)
    try:
        ck.start()
        ps.start()
        await cluster.create_checkpoint(body)
        # 1. The checkpoint controller dies right after creating the Job.
        job = await cluster.wait_object(JOBS, job_name, cluster.ns)
        ck.kill()
        ck.start()
        await cluster.wait_phase("crashy", c.PHASE_CREATING)
        pod = await kubelet.run(await cluster.job_pod(job_name))
        # 2. Both die right after the PodSnapshot appears.
        snap = await cluster.wait_object(POD_SNAPSHOTS, "crashy", cluster.ns)
        ck.kill()
        ps.kill()
        ps.start()
        ck.start()
        # 3. The PodSnapshot controller dies right after creating the content.
        content = await cluster.content_of("crashy")
        ps.kill()
        await agent.ready(content)
        ps.start()

        async def snapshot_ready() -> bool:
            obj = await cluster.maybe(POD_SNAPSHOTS, "crashy", cluster.ns)
            conds = {
                x["type"]: x["status"] for x in (obj or {}).get("status", {}).get("conditions", [])
            }
            return conds.get("Ready") == "True"

        await wait_for(snapshot_ready, TIMEOUT, "the PodSnapshot to mirror Ready")
        # 4. The checkpoint controller dies just before the Job completes. The Job is still the
        # first one: no restart made another.
        jobs = await cluster.items(JOBS)
        assert [meta(j)["uid"] for j in jobs] == [meta(job)["uid"]]
        ck.kill()
        await kubelet.finish(pod, 0)
        ck.start()
        ready = await cluster.wait_phase("crashy", c.PHASE_READY)
        # 5. Both die after Ready and come back: nothing moves.
        ck.kill()
        ps.kill()
        ck.start()
        ps.start()
        await cluster.wait_gone(JOBS, job_name, cluster.ns)
        # Exactly one of each was ever made: the same Job, PodSnapshot and content UIDs
        # throughout. (Events are best effort: a SIGKILL may lose the buffered ones.)
        snaps = await cluster.items(POD_SNAPSHOTS)
        assert [meta(s)["uid"] for s in snaps] == [meta(snap)["uid"]]
        contents = [
            x
            for x in await cluster.items(POD_SNAPSHOT_CONTENTS)
            if x["spec"]["snapshotRef"]["namespace"] == cluster.ns
        ]
        assert [meta(x)["uid"] for x in contents] == [meta(content)["uid"]]
        final = await cluster.checkpoint("crashy")
        assert final["status"]["phase"] == c.PHASE_READY
        assert final["status"]["createdAt"] == ready["status"]["createdAt"]
        assert ck.starts == 5
        assert ps.starts == 4
        assert ck.alive()
        assert ps.alive()
    finally:
        ck.stop()
        ps.stop()


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)


def _one_line_error(proc: subprocess.CompletedProcess[str], prog: str, words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, proc.stderr
    assert words in errors[0], errors[0]


@pytest.mark.parametrize("prog", [CHECKPOINT, PODSNAPSHOT])
def test_help_explains_and_exits_zero(prog: str) -> None:
    proc = _run([script(prog), "--help"])
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for flag in (
        "--kubeconfig",
        "--leader-elect",
        "--leader-election-id",
        "--metrics-bind-address",
    ):
        assert flag in text
    assert "Reconciles" in text
    if prog == PODSNAPSHOT:
        assert "--orphan-grace-period" in text


@pytest.mark.parametrize("prog", [CHECKPOINT, PODSNAPSHOT])
def test_no_kubeconfig_is_one_line(prog: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    _one_line_error(_run([script(prog)], env), prog, "no kubeconfig")


@pytest.mark.parametrize("prog", [CHECKPOINT, PODSNAPSHOT])
def test_unreachable_api_server_is_one_line(prog: str, kube_cluster: Any, tmp_path: Path) -> None:
    cfg = yaml.safe_load(kubeconfig_of(kube_cluster).read_text())
    cfg["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(cfg))
    _one_line_error(_run([script(prog), f"--kubeconfig={bad}"]), prog, "cannot reach")


def _token_free_config(admin: Path) -> dict[str, Any]:
    """The admin kubeconfig's cluster entry, with its CA inlined."""
    cfg: dict[str, Any] = yaml.safe_load(admin.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    return cfg


async def _token_kubeconfig(kube_api: ApiClient, kube_cluster: Any, ns: str, tmp: Path) -> Path:
    """A kubeconfig for a fresh ServiceAccount that no role is bound to."""
    client = RestClient(kube_api)
    await client.create(SERVICEACCOUNTS, {"metadata": {"name": "nobody"}}, ns)
    token = await client._request(
        "POST",
        SERVICEACCOUNTS.path(ns, "nobody", "token"),
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    cfg = _token_free_config(kubeconfig_of(kube_cluster))
    cfg["users"] = [{"name": "nobody", "user": {"token": token["status"]["token"]}}]
    cfg["contexts"] = [
        {"name": "nobody", "context": {"cluster": cfg["clusters"][0]["name"], "user": "nobody"}}
    ]
    cfg["current-context"] = "nobody"
    path = tmp / "nobody.kubeconfig"
    await anyio.Path(path).write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("prog", [CHECKPOINT, PODSNAPSHOT])
async def test_missing_rbac_is_one_line_naming_what_is_missing(
    prog: str, kube_api: ApiClient, kube_cluster: Any, cluster: Cluster, tmp_path: Path
) -> None:
    kc = await _token_kubeconfig(kube_api, kube_cluster, cluster.ns, tmp_path)
    proc = _run([script(prog), f"--kubeconfig={kc}"])
    resource = "dynamocheckpoints.nvidia.com" if prog == CHECKPOINT else "podsnapshots.nvidia.com"
    _one_line_error(proc, prog, "RBAC: this identity cannot list " + resource)


async def test_crd_not_installed_is_named(kube_api: ApiClient, cluster: Cluster) -> None:
    missing = Resource("nvidia.com", "v1alpha1", "nosuchthings", "NoSuchThing")
    with pytest.raises(StartupError, match=r"CRD nosuchthings\.nvidia\.com is not installed"):
        await preflight(RestClient(kube_api), [Need(missing, ("list",), custom=True)])


@pytest.mark.parametrize("prog", [CHECKPOINT, PODSNAPSHOT])
async def test_leader_election_takes_the_named_lease_and_reconciles(
    prog: str, kube_cluster: Any, cluster: Cluster, tmp_path: Path
) -> None:
    kc = kubeconfig_of(kube_cluster)
    proc = ControllerProcess(
        prog,
        kc,
        cluster.ns,
        tmp_path / "le.log",
        "--leader-elect",
        f"--leader-election-namespace={cluster.ns}",
        "--leader-election-id=le-test",
    )
    try:
        proc.start()
        lease = await cluster.wait_object(LEASES, "le-test", cluster.ns)
        assert lease["spec"]["holderIdentity"]
        # And it reconciles as the leader: a PodSnapshot of a missing pod fails at once.
        await cluster.client.create(
            POD_SNAPSHOTS,
            {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND_POD_SNAPSHOT,
                "metadata": {"name": "le"},
                "spec": {"source": {"podRef": {"name": "ghost", "containers": ["main"]}}},
            },
            cluster.ns,
        )
        if prog == PODSNAPSHOT:
            await cluster.wait_event("le", c.REASON_SOURCE_POD_NOT_FOUND)
        else:
            await cluster.create_checkpoint(checkpoint_body("le-ck"))
            await cluster.wait_phase("le-ck", c.PHASE_CREATING)
    finally:
        proc.stop()
    assert "Traceback" not in (tmp_path / "le.log").read_text()
