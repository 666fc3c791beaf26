"""The agent's capture path against the bare tools, 1 GiB of touched memory (issue 11).

One workload container (the test bed's workload, WORKLOAD_TOUCH_MIB=1024) runs in the node's
containerd (hack/node; set DYNAMO_SNAPSHOT_NODE_RUN to use a private one). Each round, in
alternating order, on the same disk:

- bare: ``criu dump`` of the container's host PID with the same options the agent uses, and
  ``sha256sum`` of the images after it (the script a user would write);
- agent, method=criu: the executor's whole capture (dump, rootfs diff, digests, manifest,
  verification, rename) and its dump phase;
- agent, method=cri: CRI CheckpointContainer through containerd, the same whole capture.

Artifacts are deleted after each run; fsync is off for the agent, as the bare script does not
sync either (the page cache is what both measure). Physical bytes written per run are read
from the disk's sector counter around a ``sync`` (outside the timed part).

Writes bench/results/agent-*.json. Usage: ``python -m bench agent [-- --runs N --mib M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench import results
from dynamo_snapshot.agent import criu as criu_mod
from dynamo_snapshot.agent.container import ContainerFacts, resolve
from dynamo_snapshot.agent.cri.client import CriClient
from dynamo_snapshot.agent.cri.podconfig import sandbox_config, workload_config
from dynamo_snapshot.agent.executor import CaptureRequest, Executor, ExecutorConfig
from dynamo_snapshot.agent.freezer import freezer_file
from dynamo_snapshot.agent.paths import resolve_destination
from dynamo_snapshot.agent.phases import Phases

REPO = Path(__file__).resolve().parents[1]


def _node() -> tuple[str, Path]:
    env = dict(
        line.split("=", 1)
        for line in subprocess.run(
            [str(REPO / "hack/node/node-env.sh")], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    socket = subprocess.run(
        [str(REPO / "hack/node/node-up.sh")], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    if env.get("RUNNING") != "yes":
        # Started here, so stopped here when the benchmark ends; one started by `just node-up`
        # (or a test session) stays up.
        atexit.register(
            subprocess.run, [str(REPO / "hack/node/node-down.sh")], capture_output=True, check=False
        )
    subprocess.run([str(REPO / "hack/images/build-images.sh")], capture_output=True, check=True)
    return socket, Path(env["NODE_BIN"]) / "criu"


def _disk_sectors(path: Path) -> int:
    dev = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if not stat.exists():
        return 0
    return int(stat.read_text().split()[6])


def _written(path: Path, before: int) -> int:
    os.sync()
    return (_disk_sectors(path) - before) * 512


async def _bare(criu: Path, facts: ContainerFacts, work: Path) -> tuple[float, float, int]:
    images = work / f"bare-{uuid.uuid4().hex[:6]}"
    images.mkdir(mode=0o700)
    freezer = freezer_file(Path("/sys/fs/cgroup"), facts.cgroups_path)
    args = criu_mod.dump_args(
        pid=facts.pid,
        images=images,
        root=Path(f"/proc/{facts.pid}/root"),
        freezer_cgroup=freezer.parent if freezer else None,
        external_mount_points=sorted(
            criu_mod.external_mounts(facts.spec, criu_mod.cgroup_mounts(Path("/sys/fs/cgroup")))
        ),
        external_netns_inode=None,
    )
    os.sync()
    sectors = _disk_sectors(work)
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(str(criu), *args)
    assert await proc.wait() == 0, criu_mod.log_tail(images / "dump.log")
    t1 = time.monotonic()
    files = [str(p) for p in sorted(images.iterdir())]
    proc = await asyncio.create_subprocess_exec("sha256sum", *files, stdout=subprocess.DEVNULL)
    assert await proc.wait() == 0
    t2 = time.monotonic()
    written = _written(work, sectors)
    shutil.rmtree(images)
    return t1 - t0, t2 - t0, written


async def _agent(executor: Executor, req: CaptureRequest, root: Path) -> tuple[float, float, int]:
    dest = resolve_destination(root, None, f"bench-{uuid.uuid4().hex[:8]}", "1")
    phases = Phases()
    os.sync()
    sectors = _disk_sectors(root)
    t0 = time.monotonic()
    await executor.capture(req, dest, phases)
    total = time.monotonic() - t0
    written = _written(root, sectors)
    shutil.rmtree(dest.base / dest.checkpoint_id)
    return phases.timings["dump"], total, written


def _prepare(work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    (work / "control").mkdir(parents=True, mode=0o700)
    return work


async def run(runs: int, mib: int) -> None:
    socket, criu = _node()
    work = _prepare(Path(os.environ.get("BENCH_WORK", "/var/tmp/dynamo-snapshot-bench")))
    control = work / "control"
    async with CriClient(socket, timeout=60) as cri:
        cfg = sandbox_config(f"bench-{uuid.uuid4().hex[:6]}", work, namespace="bench")
        sandbox = await cri.run_pod_sandbox(cfg)
        try:
            cid = await cri.create_container(
                sandbox, workload_config(control, env={"WORKLOAD_TOUCH_MIB": str(mib)}), cfg
            )
            await cri.start_container(cid)
            deadline = time.monotonic() + 120
            while not (control / "ready-for-snapshot").exists():
                assert time.monotonic() < deadline, "workload never became ready"
                await asyncio.sleep(0.1)
            facts = await resolve(cri, cid)
            req = CaptureRequest("bench", cfg.metadata.name, cfg.metadata.uid, "bench", facts)

            def executor(method: str) -> Executor:
                return Executor(
                    cri,
                    ExecutorConfig(
                        storage_root=work,
                        method=method,  # type: ignore[arg-type]
                        criu_path=str(criu),
                        fsync=False,
                    ),
                )

            measured: dict[str, list[Any]] = {k: [] for k in ("bare", "agent_criu", "agent_cri")}
            order = ["bare", "agent_criu", "agent_cri"]
            for i in range(runs):
                for name in order if i % 2 == 0 else list(reversed(order)):
                    if name == "bare":
                        measured[name].append(await _bare(criu, facts, work))
                    else:
                        method = name.removeprefix("agent_")
                        measured[name].append(await _agent(executor(method), req, work))
                    print(name, measured[name][-1], flush=True)
        finally:
            await cri.stop_pod_sandbox(sandbox)
            await cri.remove_pod_sandbox(sandbox)
    shutil.rmtree(work, ignore_errors=True)
    _write(measured, mib)


def _write(m: dict[str, list[Any]], mib: int) -> None:
    inputs = {"touched_mib": mib, "fsync": False, "runtime": "containerd 2.1.9, runc, CRIU 4.1.1"}
    bare_dump = [x[0] for x in m["bare"]]
    bare_total = [x[1] for x in m["bare"]]
    bare_bytes = [x[2] for x in m["bare"]]
    results.write(
        f"agent-criu-dump-vs-bare-criu-{mib}m",
        what=f"dump phase of the agent (method=criu) vs bare `criu dump`, {mib} MiB touched",
        unit="s",
        ours=[x[0] for x in m["agent_criu"]],
        baseline_name="bare criu dump (same options, same process)",
        baseline=bare_dump,
        better="lower",
        goal=1.1,
        inputs=inputs,
    )
    results.write(
        f"agent-capture-vs-criu-and-sha256-{mib}m",
        what=f"whole capture by the agent (method=criu: dump, rootfs diff, SHA-256 of every "
        f"file, manifest, verify, rename) vs `criu dump && sha256sum`, {mib} MiB touched",
        unit="s",
        ours=[x[1] for x in m["agent_criu"]],
        baseline_name="criu dump && sha256sum images/*",
        baseline=bare_total,
        better="lower",
        goal=1.0,
        inputs=inputs,
    )
    results.write(
        f"agent-cri-capture-vs-bare-criu-{mib}m",
        what=f"whole capture by the agent with method=cri (CRI CheckpointContainer) vs bare "
        f"`criu dump`, {mib} MiB touched",
        unit="s",
        ours=[x[1] for x in m["agent_cri"]],
        baseline_name="bare criu dump (same process)",
        baseline=bare_dump,
        better="lower",
        goal=None,
        inputs={
            **inputs,
            "disk_bytes_written_median": {
                "bare_criu_dump_and_sha256": sorted(bare_bytes)[len(bare_bytes) // 2],
                "agent_criu": sorted(x[2] for x in m["agent_criu"])[len(m["agent_criu"]) // 2],
                "agent_cri": sorted(x[2] for x in m["agent_cri"])[len(m["agent_cri"]) // 2],
            },
        },
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench agent")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args(argv)
    asyncio.run(run(args.runs, args.mib))
    return 0
