"""The capture flow as a user drives it with kubectl: create a DynamoCheckpoint, watch it with
progress (phase and last Event), read what it made. Shared by the e2e suite and `just demo`."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from e2e.deploy import Kubectl

GROUP = "nvidia.com"
WORKLOAD_IMAGE = "localhost/dynamo-snapshot/workload:v1"
ARTIFACT_VERSION = "nvidia.com/snapshot-artifact-version"
STORAGE_BASE_PATH = "nvidia.com/snapshot-storage-base-path"
TERMINAL = ("Ready", "Failed")
Obj = dict[str, Any]


def checkpoint_manifest(
    name: str,
    *,
    model: str | None = None,
    env: Mapping[str, str] | None = None,
    target: str = "main",
    container: str = "main",
    deadline: int = 300,
    pod_annotations: Mapping[str, str] | None = None,
    version: str = "1",
) -> Obj:
    """A DynamoCheckpoint whose Job runs the test bed's workload image (SPEC §3 contract: it writes
    ready-for-snapshot after WORKLOAD_WARMUP_TICKS ticks and exits 0 on snapshot-complete)."""
    workload_env = {"WORKLOAD_TICK_SECONDS": "0.2", "WORKLOAD_WARMUP_TICKS": "5", **(env or {})}
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "DynamoCheckpoint",
        "metadata": {"name": name, "annotations": {ARTIFACT_VERSION: version}},
        "spec": {
            "identity": {
                # Unique per object unless asked: two checkpoints may not own one ID (SPEC §2).
                "model": model or f"e2e/{name}-{uuid.uuid4().hex[:8]}",
                "backendFramework": "vllm",
                "dynamoVersion": "0.7.0",
                "dtype": "bf16",
                "maxModelLen": 2048,
            },
            "job": {
                "targetContainerName": target,
                "activeDeadlineSeconds": deadline,
                "sharedMemory": {"size": "64Mi"},
                "podTemplateSpec": {
                    "metadata": {"annotations": dict(pod_annotations or {})},
                    "spec": {
                        "terminationGracePeriodSeconds": 2,
                        "containers": [
                            {
                                "name": container,
                                "image": WORKLOAD_IMAGE,
                                "imagePullPolicy": "Never",
                                "env": [{"name": k, "value": v} for k, v in workload_env.items()],
                            }
                        ],
                    },
                },
            },
        },
    }


@dataclass
class Watch:
    """What a poll of one DynamoCheckpoint saw, kept for assertions after the wait."""

    checkpoint: Obj = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)  # each phase in the order first seen
    job_conditions: set[str] = field(default_factory=set)  # Job condition types seen True
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (seconds, phase)

    @property
    def status(self) -> Obj:
        return dict(self.checkpoint.get("status", {}))

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", ""))


def get(kubectl: Kubectl, kind: str, name: str, namespace: str | None = None) -> Obj | None:
    args = ["get", kind, name, "--ignore-not-found", "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    out = kubectl(*args)
    return json.loads(out) if out.strip() else None


def events_of(kubectl: Kubectl, namespace: str, kind: str, name: str) -> list[Obj]:
    """Events about one object, oldest first (core/v1 Events, as `kubectl describe` shows)."""
    items: list[Obj] = kubectl.json(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind={kind},involvedObject.name={name}",
    )["items"]

    def when(e: Obj) -> str:
        return str(
            e.get("lastTimestamp") or e.get("eventTime") or e["metadata"]["creationTimestamp"]
        )

    return sorted(items, key=when)


def condition(obj: Obj | None, kind: str) -> Obj | None:
    for c in (obj or {}).get("status", {}).get("conditions", []) or []:
        if c.get("type") == kind:
            return dict(c)
    return None


def wait_terminal(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    timeout: float,
    out: Callable[[str], None] = print,
    until: tuple[str, ...] = TERMINAL,
) -> Watch:
    """Poll the DynamoCheckpoint until its phase is in ``until``, printing a progress line (phase
    and last Event) whenever it changes; record the phases and the Job's conditions seen."""
    w = Watch()
    t0 = time.monotonic()
    last_line = ""
    while True:
        obj = get(kubectl, "dckpt", name, namespace)
        if obj is None:
            raise AssertionError(f"DynamoCheckpoint {namespace}/{name} disappeared")
        w.checkpoint = obj
        phase = w.phase or "(no phase)"
        if not w.phases or w.phases[-1] != phase:
            w.phases.append(phase)
            w.timeline.append((time.monotonic() - t0, phase))
        job_name = w.status.get("jobName")
        if job_name:
            job = get(kubectl, "job", job_name, namespace)
            for c in (job or {}).get("status", {}).get("conditions", []) or []:
                if c.get("status") == "True":
                    w.job_conditions.add(str(c["type"]))
        events = events_of(kubectl, namespace, "DynamoCheckpoint", name)
        last_event = f"{events[-1]['reason']}: {events[-1]['message']}" if events else "-"
        line = f"[{time.monotonic() - t0:5.1f}s] phase={phase:9} last event: {last_event}"
        if line.split("]", 1)[1] != last_line:
            out(f"    {line}")
            last_line = line.split("]", 1)[1]
        if w.phase in until:
            return w
        if time.monotonic() - t0 > timeout:
            raise AssertionError(
                f"DynamoCheckpoint {namespace}/{name} not {'/'.join(until)} after {timeout:.0f} s: "
                f"phase={phase}, status={json.dumps(w.status)}"
            )
        time.sleep(0.5)


def failed_summary(obj: Obj) -> str:
    """Reason and message of a Failed object (the Failed condition, else status.message)."""
    c = condition(obj, "Failed")
    if c is not None and c.get("status") == "True":
        return f"{c.get('reason')}: {c.get('message')}"
    return str(obj.get("status", {}).get("message", ""))
