"""A real workload captured end to end through the agent: real apiserver, real containerd, CRIU.

The content becomes Ready (reason Captured), the artifact is complete and verifies, the
sentinel releases the workload, which exits 0; /metrics holds samples by method and phase.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dynamo_snapshot.agent import artifact
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.runtime import PODS
from tests.integration.agent.conftest import Bed, RunAgent
from tests.support import wait_for

pytestmark = pytest.mark.node


async def scrape(address: tuple[str, int]) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{address[0]}:{address[1]}/metrics") as resp,
    ):
        text = await resp.text()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


@pytest.mark.parametrize("method", ["criu", "cri"])
async def test_capture_end_to_end(
    method: str, bed: Bed, run_agent: RunAgent, storage_root: Path
) -> None:
    checkpoint_id = f"e2e-{method}"
    namespace = bed.namespace
    async with (
        run_agent(method=method) as (mgr, _agent),
        bed.pod(checkpoint_id=checkpoint_id) as pod,
    ):
        content = await bed.order(pod)
        cond = await bed.terminal(content, 120)
        assert cond["type"] == c.CONDITION_READY, cond
        assert cond["reason"] == c.REASON_CAPTURED
        final = storage_root / checkpoint_id / "versions" / "1"
        assert str(final) in cond["message"]
        manifest = artifact.verify(final, full=True)
        assert manifest["method"] == method
        assert manifest["pod"] == {"namespace": namespace, "name": pod.name, "uid": pod.uid}
        for dirpath, _dirs, files in os.walk(storage_root / checkpoint_id):
            assert os.stat(dirpath).st_mode & 0o777 == 0o700, dirpath
            for f in files:
                assert os.stat(os.path.join(dirpath, f)).st_mode & 0o777 == 0o600
        # Ready is persisted first, the sentinel written right after it.
        sentinel = pod.control_dir / c.SNAPSHOT_COMPLETE_FILE
        await wait_for(sentinel.exists, 30, f"{sentinel} written")
        await wait_for(pod.exited, 30, "workload exit")
        assert await pod.exit_code() == 0
        pod_obj = await bed.api.get(PODS, pod.name, namespace)
        assert pod_obj["metadata"]["labels"][c.LABEL_CAPTURE_ELIGIBLE] == c.LABEL_TRUE

        assert mgr.health_address is not None
        host, port = mgr.health_address
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/healthz?verbose") as resp,
        ):
            assert resp.status == 200
            assert "[+]cri ok" in await resp.text()
        assert mgr.metrics_address is not None
        address = mgr.metrics_address

        async def counted() -> dict[str, list[tuple[dict[str, str], float]]] | None:
            found = await scrape(address)
            done = found.get("dynamo_snapshot_capture_duration_seconds_count", [])
            return found if any(lab.get("method") == method for lab, _v in done) else None

        # The capture's duration is observed when its task ends, after the sentinel and the
        # Lease's release: the workload may exit before that.
        samples = await wait_for(counted, 30, "the capture's duration in /metrics")
        counts = samples["dynamo_snapshot_capture_duration_seconds_count"]
        assert ({"method": method, "result": "success"}, 1.0) in counts
        phases = {
            labels["phase"]
            for labels, value in samples["dynamo_snapshot_capture_phase_duration_seconds_count"]
            if labels["method"] == method and value > 0
        }
        assert {"queue_wait", "lease", "wait_ready", "dump", "digest", "finalize"} <= phases
        if method == "criu":
            assert "rootfs_diff" in phases
        written = samples["dynamo_snapshot_capture_bytes_written_total"]
        assert any(lab == {"method": method} and v > 0 for lab, v in written)
