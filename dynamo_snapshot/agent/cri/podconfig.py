"""Pod sandbox and container configs shaped like the ones a kubelet sends, for the test bed.

The demo (``hack/demo.py``), the node tests and the agent's integration tests all play the kubelet
against the private containerd of ``hack/node``: they run the workload image in a host-network pod
with the SPEC §3 control volume bind-mounted from the host. The configs are built here once, so
that every one of them runs the same pod the agent is tested against.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from dynamo_snapshot.agent.cri.client import pb
from dynamo_snapshot.api.constants import (
    CONTROL_DIR_ENV,
    CONTROL_MOUNT_PATH,
    LEGACY_CONTROL_DIR_ENV,
)

# The images hack/images builds and hack/node imports (`localhost/`: nothing tries a registry).
WORKLOAD_IMAGE: Final = "localhost/dynamo-snapshot/workload:v1"
PAUSE_IMAGE: Final = "localhost/dynamo-snapshot/pause:v1"
# Where the workload reads its control directory (SPEC §3).
CONTROL_DIR: Final = CONTROL_MOUNT_PATH
# cgroupfs parent of test-bed pods; hack/node/node-down.sh removes what is left of it.
CGROUP_PARENT: Final = "/dynamo-snapshot-node"

# Host network (no CNI on the test bed), a PID namespace of the container's own.
_NAMESPACES: Final = pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER)


def sandbox_config(
    name: str,
    log_dir: Path,
    *,
    namespace: str = "node-tests",
    uid: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> pb.PodSandboxConfig:
    """A host-network pod with a pod-level cgroup under our parent, as a kubelet sends it."""
    uid = uid or uuid.uuid4().hex
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace),
        log_directory=str(log_dir),
        labels={
            "io.kubernetes.pod.name": name,
            "io.kubernetes.pod.namespace": namespace,
            "io.kubernetes.pod.uid": uid,
            **(labels or {}),
        },
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=f"{CGROUP_PARENT}/pod{uid}",
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=_NAMESPACES),
        ),
    )


def workload_config(
    control_dir: Path,
    *,
    name: str = "main",
    env: Mapping[str, str] | None = None,
    tick_seconds: float = 0.1,
    labels: Mapping[str, str] | None = None,
) -> pb.ContainerConfig:
    """The workload container with the SPEC §3 control volume bind-mounted from ``control_dir``.

    ``env`` adds to or overrides the workload's settings (``WORKLOAD_TOUCH_MIB``, ...).
    """
    envs = {
        CONTROL_DIR_ENV: CONTROL_DIR,
        LEGACY_CONTROL_DIR_ENV: CONTROL_DIR,
        "WORKLOAD_TICK_SECONDS": f"{tick_seconds:g}",
        **(env or {}),
    }
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name),
        image=pb.ImageSpec(image=WORKLOAD_IMAGE),
        envs=[pb.KeyValue(key=k, value=v) for k, v in envs.items()],
        mounts=[pb.Mount(container_path=CONTROL_DIR, host_path=str(control_dir))],
        labels={"io.kubernetes.container.name": name, **(labels or {})},
        log_path=f"{name}.log",
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(namespace_options=_NAMESPACES)
        ),
    )
