"""The main job, end to end through the real flow: deploy dynamo-snapshot to the local cluster,
ask for a checkpoint of a demo workload with a DynamoCheckpoint, follow it to Ready, and report
what was made.

`just demo` first runs `just up` (control plane, node runtime, kubelet node). Then this script:
1. deploys CRDs, RBAC, both controllers and the node agent from the in-cluster image, exactly as
   `just deploy` does (e2e/deploy.py), and waits until they are Ready;
2. creates the DynamoCheckpoint `demo` in namespace `dynamo-demo`, whose checkpoint Job runs the
   test bed's workload (64 MiB of warmed memory; it says ready-for-snapshot after a few ticks);
3. shows progress (phase and last Event) while the checkpoint controller runs the Job, the
   PodSnapshot controller binds a content to the node, and the agent there dumps the container;
4. reports the phase timings from the artifact's manifest, the artifact's path, size and digest,
   this capture's latency read back from the agent's /metrics, and what `kubectl get` shows.

Run again, it reuses what runs: a Ready (or Failed) checkpoint gets its artifact version bumped
(SPEC §3 `nvidia.com/snapshot-artifact-version`), which captures a new version beside the old one;
one still in progress is followed. A failure ends with the Failed condition's reason and message.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from e2e import deploy, flow  # noqa: E402
from e2e.metrics import component_pods, sample_value, scrape  # noqa: E402

NAMESPACE = "dynamo-demo"
NAME = "demo"
TIMEOUT = 300.0
LATENCY = "dynamo_snapshot_capture_duration_seconds"


class DemoFailed(Exception):
    """The demo cannot go on; the message is what the user sees (no traceback)."""


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def demo_checkpoint(version: str) -> dict[str, Any]:
    manifest = flow.checkpoint_manifest(
        NAME,
        model="Qwen/Qwen3-0.6B",  # one identity, so one checkpoint ID across runs
        env={"WORKLOAD_TOUCH_MIB": "64", "WORKLOAD_WARMUP_TICKS": "5"},
        version=version,
    )
    manifest["metadata"]["namespace"] = NAMESPACE
    manifest["spec"]["identity"]["extraParameters"] = {"demo": "true"}
    return manifest


def agent_latency(kubectl: deploy.Kubectl, node: str) -> tuple[float, float]:
    """(sum, count) of successful capture latency on the agent of ``node``."""
    pods = [p for p in component_pods(kubectl, deploy.DAEMONSET) if p["spec"]["nodeName"] == node]
    if not pods:
        raise DemoFailed(f"no agent pod on node {node}")
    text = scrape(kubectl, pods[0])
    return (
        sample_value(text, f"{LATENCY}_sum", result="success"),
        sample_value(text, f"{LATENCY}_count", result="success"),
    )


def start_or_resume(kubectl: deploy.Kubectl) -> str:
    """Create the demo checkpoint, or bump the version of a finished one; return the version."""
    kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        ),
    )
    existing = flow.get(kubectl, "dckpt", NAME, NAMESPACE)
    if existing is None:
        kubectl("apply", "-f", "-", input=json.dumps(demo_checkpoint("1")))
        say(f"created DynamoCheckpoint {NAMESPACE}/{NAME} (artifact version 1)")
        return "1"
    version = existing["metadata"].get("annotations", {}).get(flow.ARTIFACT_VERSION, "1")
    phase = existing.get("status", {}).get("phase", "")
    if phase not in flow.TERMINAL:
        say(
            f"DynamoCheckpoint {NAMESPACE}/{NAME} is in progress (phase {phase or '-'}): "
            "following it"
        )
        return str(version)
    new = str(int(version) + 1) if version.isdigit() else f"{version}-1"
    say(
        f"DynamoCheckpoint {NAMESPACE}/{NAME} exists ({phase}, artifact version {version}): "
        f"capturing version {new}"
    )
    kubectl(
        "annotate", "dckpt", NAME, "-n", NAMESPACE, "--overwrite", f"{flow.ARTIFACT_VERSION}={new}"
    )
    return new


def failure_report(kubectl: deploy.Kubectl, obj: dict[str, Any]) -> str:
    lines = [f"DynamoCheckpoint {NAMESPACE}/{NAME} Failed: {obj['status'].get('message', '')}"]
    ps_name = obj["status"].get("podSnapshotName")
    podsnap = flow.get(kubectl, "podsnap", ps_name, NAMESPACE) if ps_name else None
    failed = flow.condition(podsnap, "Failed")
    if failed is not None and failed.get("status") == "True" and failed["reason"] not in lines[0]:
        lines.append(f"PodSnapshot {ps_name}: {failed.get('reason')}: {failed.get('message')}")
    return "\n".join(lines)


def report(
    kubectl: deploy.Kubectl,
    deployed: deploy.Deployed,
    watch: flow.Watch,
    version: str,
    latency: float,
) -> None:
    assert deployed.node is not None
    status = watch.status
    artifact = deployed.node.checkpoints / status["checkpointID"] / "versions" / version
    manifest = json.loads((artifact / "manifest.json").read_text())
    print()
    say("checkpoint Ready")
    rows = [
        ("checkpoint ID", status["checkpointID"]),
        ("artifact", str(artifact)),
        ("method", manifest["method"]),
        ("size", f"{manifest['totalBytes'] / 2**20:.1f} MiB in {len(manifest['files'])} file(s)"),
    ]
    # One digest stands for the whole artifact: the manifest lists every file's SHA-256.
    digest = hashlib.sha256((artifact / "manifest.json").read_bytes()).hexdigest()
    rows.append(("digest", f"sha256:{digest} (manifest.json)"))
    if len(manifest["files"]) == 1:
        f = manifest["files"][0]
        rows.append((f"  {f['path']}", f"sha256:{f['sha256']}"))
    rows.append(("capture latency (/metrics)", f"{latency:.2f} s"))
    for phase, seconds in manifest.get("phases", {}).items():
        rows.append((f"  phase {phase}", f"{seconds:.3f} s"))
    total = watch.timeline[-1][0] if watch.timeline else 0.0
    rows.append(("DynamoCheckpoint to Ready", f"{total:.1f} s (Job start and end included)"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"    {k:{width}}  {v}")
    print()
    say(f"kubectl get dckpt,podsnap,podsnapcontent -n {NAMESPACE}")
    print(kubectl("get", "dckpt,podsnap", "-n", NAMESPACE), end="")
    print(kubectl("get", "podsnapcontent"), end="")
    print()
    say("metrics: " + ", ".join(f"{k} {v}" for k, v in deployed.metrics.items()))


def main() -> int:
    kubeconfig = subprocess.run(
        [sys.executable, str(REPO / "hack/controlplane.py"), "kubeconfig"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not kubeconfig:
        raise DemoFailed("no local cluster: run `./hack/just demo` (it starts one)")
    kubectl = deploy.Kubectl(Path(kubeconfig))
    deployed = deploy.up(Path(kubeconfig), "local")
    if deployed.node is None:
        raise DemoFailed(f"{kubeconfig} has no local node: run `./hack/just up`")
    before = agent_latency(kubectl, deployed.node.name)
    version = start_or_resume(kubectl)
    watch = flow.wait_terminal(kubectl, NAMESPACE, NAME, TIMEOUT, out=print)
    if watch.phase == "Failed":
        raise DemoFailed(failure_report(kubectl, watch.checkpoint))
    # The agent records the latency as it marks the content Ready, before the checkpoint is.
    after = before
    deadline = time.monotonic() + 30
    while after[1] <= before[1] and time.monotonic() < deadline:
        after = agent_latency(kubectl, deployed.node.name)
        time.sleep(0.5)
    if after[1] <= before[1]:
        raise DemoFailed("the agent's /metrics holds no new capture-latency sample")
    latency = (after[0] - before[0]) / (after[1] - before[1])
    report(kubectl, deployed, watch, version, latency)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (DemoFailed, deploy.DeployError, AssertionError) as e:
        print(f"\ndemo: failed: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
