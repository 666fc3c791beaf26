"""dynamo-snapshot-agent: the node agent (SPEC §4.3), one per node (a DaemonSet).

Settings come from a YAML file (--config or $DYNAMO_SNAPSHOT_CONFIG), then the environment, then
these flags; see dynamo_snapshot/agent/config.py for every name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from dynamo_snapshot.agent.app import assemble
from dynamo_snapshot.agent.capture import CONTENTS
from dynamo_snapshot.agent.config import FIELD_TO_KEY, AgentConfig, ConfigError, load
from dynamo_snapshot.cmd.common import (
    CommonOptions,
    Need,
    StartupError,
    build_parser,
    load_api_client,
    manager_options,
    needs_in,
    preflight,
    run,
)
from dynamo_snapshot.runtime import LEASES, PODS

DESCRIPTION: Final = """\
The dynamo-snapshot node agent. It watches the PodSnapshotContents assigned to this node
(label nvidia.com/snapshot-node=<node>) and the capture-eligible pods running here, checks each
work order (gate), waits until the target container is Ready, and dumps it: through the
container runtime's CRI CheckpointContainer or CRIU directly (--method), into
<storage-root>/<checkpointID>/versions/<artifactVersion>, with a manifest of SHA-256 digests.
It then marks the content Ready (or Failed with a reason) and writes snapshot-complete into the
workload's control directory.

Settings: YAML file (--config, $DYNAMO_SNAPSHOT_CONFIG), then environment (NODE_NAME,
DYNAMO_SNAPSHOT_RUNTIME_ENDPOINT, DYNAMO_SNAPSHOT_STORAGE_ROOT, DYNAMO_SNAPSHOT_HOST_PROC,
DYNAMO_SNAPSHOT_METHOD, ...), then flags."""

_FLAG_HELP: Final = {
    "node_name": "this node's name (default $NODE_NAME); required",
    "runtime_endpoint": "CRI socket (default unix:///run/containerd/containerd.sock)",
    "host_proc": "the host's /proc as mounted in the agent (default /proc)",
    "cgroup_root": "the host's cgroup file systems (default /sys/fs/cgroup)",
    "storage_root": "checkpoint storage root; pods may only narrow it "
    "(default /var/lib/dynamo-snapshot/checkpoints)",
    "method": "dump method: auto, cri or criu (default auto; see README)",
    "criu_path": "CRIU binary for the criu method (default criu on PATH)",
    "criu_config_file": "CRIU configuration file passed as CRIU_CONFIG_FILE",
    "cuda_checkpoint": "path of NVIDIA's cuda-checkpoint; enables the GPU step",
    "workers": "reconcile workers (default 4)",
    "cri_timeout_seconds": "deadline of ordinary CRI calls (default 10)",
    "checkpoint_timeout_seconds": "deadline of one dump (default 600)",
    "lease_duration_seconds": "checkpoint Lease duration (default 30)",
    "lease_renew_seconds": "checkpoint Lease renewal period (default 10)",
    "shutdown_grace_seconds": "on SIGTERM, how long a running dump may finish (default 60)",
}


def build(argv_prog: str = "dynamo-snapshot-agent") -> argparse.ArgumentParser:
    parser = build_parser(argv_prog, DESCRIPTION, leader_election=False)
    agent = parser.add_argument_group("agent")
    agent.add_argument("--config", metavar="PATH", default=None, help="YAML settings file")
    for field, text in _FLAG_HELP.items():
        flag = "--" + field.replace("_", "-")
        agent.add_argument(flag, dest=field, default=None, help=text)
    agent.add_argument(
        "--fsync",
        dest="fsync",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="fsync an artifact before publishing it (default on)",
    )
    return parser


def config_from(args: argparse.Namespace) -> AgentConfig:
    overrides = {f: getattr(args, f, None) for f in FIELD_TO_KEY}
    try:
        return load(file=args.config, overrides=overrides)
    except ConfigError as err:
        raise StartupError(f"config: {err}") from None


async def start(opts: CommonOptions, args: argparse.Namespace) -> None:
    cfg = config_from(args)
    api = await load_api_client(opts.kubeconfig)
    try:
        options = manager_options(opts, "dynamo-snapshot-agent")
        async with assemble(api, cfg, options) as (mgr, _agent):
            await preflight(
                mgr.live,
                [
                    Need(CONTENTS, ("list", "watch"), custom=True),
                    Need(CONTENTS, ("patch",), subresource="status"),
                    *needs_in(opts.namespaces, PODS, ("get", "list", "watch", "patch")),
                    Need(LEASES, ("create", "get", "update", "delete")),
                ],
            )
            await mgr.run()
    finally:
        await api.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run(build(), start, argv)


if __name__ == "__main__":
    sys.exit(main())
