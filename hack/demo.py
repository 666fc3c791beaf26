"""The main job: deploy dynamo-snapshot's API to the local cluster, then checkpoint a demo workload
on the local node and print the result.

`just demo` first runs `just up` (control plane + node runtime). Then this script:
1. deploys the CRDs, namespace and least-privilege RBAC (server-side apply of manifests/);
2. creates the sample DynamoCheckpoint and reads its checkpoint ID (SPEC §2: SHA-256 of the
   normalised identity);
3. runs the workload container on the node through CRI, as a kubelet would, with the SPEC §3
   control volume, and waits until it writes `ready-for-snapshot`;
4. checkpoints it through CRI `CheckpointContainer` into a staging directory, renames the
   complete artifact to `<base>/<checkpointID>/versions/1` (0700 directories, 0600 files), writes
   `snapshot-complete`, and waits for the workload to exit 0;
5. prints what was captured.

Until the controllers and the node agent land, step 4 is done here with the same CRI call the
agent makes; the DynamoCheckpoint therefore stays without a phase.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import yaml

from dynamo_snapshot.agent.cri.client import CriClient, pb
from dynamo_snapshot.agent.cri.podconfig import sandbox_config, workload_config
from dynamo_snapshot.api.checkpoint_id import identity_hash
from dynamo_snapshot.api.dynamocheckpoint import DynamoCheckpoint

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / ".run" / "demo"
DEMO_NAMESPACE = "dynamo-demo"


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def kubectl(*args: str, input: str | None = None) -> str:
    kubeconfig = os.environ.get("KUBECONFIG") or sh("python", "hack/controlplane.py", "kubeconfig")
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"demo: kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def sh(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"demo: {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def deploy() -> None:
    say("deploying CRDs, namespace and RBAC (server-side apply)")
    for part in ("crds", "namespace", "rbac"):
        kubectl("apply", "--server-side", "--force-conflicts", "-k", f"manifests/{part}")
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/dynamocheckpoints.nvidia.com",
        "crd/podsnapshots.nvidia.com",
        "crd/podsnapshotcontents.nvidia.com",
    )


def create_checkpoint_request() -> tuple[str, str]:
    """Create the sample DynamoCheckpoint; return (its name, its checkpoint ID)."""
    sample: dict[str, Any] = yaml.safe_load(
        (REPO / "manifests/samples/dynamocheckpoint.yaml").read_text()
    )
    kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEMO_NAMESPACE}}
        ),
    )
    sample["metadata"]["namespace"] = DEMO_NAMESPACE
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(sample))
    checkpoint = DynamoCheckpoint.from_dict(sample)
    name = sample["metadata"]["name"]
    say(f"created DynamoCheckpoint {DEMO_NAMESPACE}/{name}")
    print(kubectl("get", "dckpt", "-n", DEMO_NAMESPACE, name), end="")
    return name, identity_hash(checkpoint.spec.identity)


async def capture(
    cri_socket: str, checkpoint_id: str, base: Path, touch_mib: int
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    control = RUN / run_id / "control" / "main"
    logs = RUN / run_id / "logs"
    control.mkdir(parents=True, mode=0o700)
    logs.mkdir(parents=True, mode=0o700)
    sandbox_cfg = sandbox_config(f"demo-{run_id}", logs, namespace=DEMO_NAMESPACE)
    container_cfg = workload_config(
        control, env={"WORKLOAD_TOUCH_MIB": str(touch_mib)}, tick_seconds=0.2
    )

    async with CriClient(cri_socket) as cri:
        version = await cri.version()
        runtime = f"{version.runtime_name} {version.runtime_version}"
        say(f"node runtime: {runtime} (CRI {version.runtime_api_version})")
        sandbox = await cri.run_pod_sandbox(sandbox_cfg)
        try:
            container = await cri.create_container(sandbox, container_cfg, sandbox_cfg)
            await cri.start_container(container)
            say(
                f"workload started (container {container[:12]}, {touch_mib} MiB of warmed memory); "
                "waiting for ready-for-snapshot"
            )
            await _wait_file(
                control / "ready-for-snapshot", 120, "the workload to write ready-for-snapshot"
            )
            counter_at_ready = (control / "counter").read_text().strip()

            final = base / checkpoint_id / "versions" / "1"
            if final.exists():
                raise SystemExit(f"demo: {final} already exists; remove it or bump the version")
            staging = base / checkpoint_id / "versions" / "tmp" / secrets.token_hex(8)
            _mkdirs(staging)
            archive = staging / "checkpoint.tar"
            say(f"CheckpointContainer -> {archive}")
            t0 = time.monotonic()
            await cri.checkpoint_container(container, str(archive), timeout=300)
            seconds = time.monotonic() - t0
            archive.chmod(0o600)
            digest = _sha256(archive)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            staging.rename(final)  # only a complete artifact ever appears at the final path
            say("artifact complete; writing snapshot-complete")
            (control / ".snapshot-complete.tmp").write_text("done\n")
            (control / ".snapshot-complete.tmp").rename(control / "snapshot-complete")
            exit_code = await _wait_exit(cri, container, 60)
            return {
                "checkpoint ID": checkpoint_id,
                "artifact": str(final / "checkpoint.tar"),
                "size": f"{(final / 'checkpoint.tar').stat().st_size / 2**20:.1f} MiB",
                "sha256": digest,
                "CheckpointContainer took": f"{seconds:.2f} s",
                "counter at ready-for-snapshot": counter_at_ready,
                "archive holds": ", ".join(_archive_top(final / "checkpoint.tar")),
                "workload exit code": str(exit_code),
                "modes": f"dirs {oct(final.stat().st_mode & 0o777)}, file "
                f"{oct((final / 'checkpoint.tar').stat().st_mode & 0o777)}",
            }
        finally:
            await cri.stop_pod_sandbox(sandbox)
            await cri.remove_pod_sandbox(sandbox)


def _mkdirs(path: Path, exist_ok: bool = False) -> None:
    old = os.umask(0o077)
    try:
        path.mkdir(parents=True, mode=0o700, exist_ok=exist_ok)
    finally:
        os.umask(old)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _archive_top(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return sorted({m.name.split("/")[0] for m in tar.getmembers()})


async def _wait_file(path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await anyio.Path(path).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def _wait_exit(cri: CriClient, container: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        status = await cri.container_status(container)
        if status.status.state == pb.CONTAINER_EXITED:
            return int(status.status.exit_code)
        if time.monotonic() > deadline:
            raise SystemExit(
                f"demo: the workload did not exit within {timeout:.0f} s of snapshot-complete"
            )
        await asyncio.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-path",
        type=Path,
        default=REPO / ".run" / "checkpoints",
        help="checkpoint storage base path (default .run/checkpoints)",
    )
    parser.add_argument(
        "--touch-mib", type=int, default=64, help="MiB of warmed memory the workload holds"
    )
    args = parser.parse_args()
    deploy()
    _, checkpoint_id = create_checkpoint_request()
    cri_socket = sh("bash", "hack/node/node-env.sh", "CRI_SOCKET")
    shutil.rmtree(args.base_path / checkpoint_id, ignore_errors=True)  # the demo re-runs cleanly
    _mkdirs(args.base_path, exist_ok=True)
    result = asyncio.run(capture(cri_socket, checkpoint_id, args.base_path, args.touch_mib))
    print("\nCheckpoint captured")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
