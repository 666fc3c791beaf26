"""`dynamo-podsnapshot-controller`: the console script of the PodSnapshot controller (SPEC §4.2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from dynamo_snapshot.api.resources import POD_SNAPSHOT_CONTENTS, POD_SNAPSHOTS
from dynamo_snapshot.cmd.common import (
    CommonOptions,
    Need,
    build_parser,
    needs_in,
    run,
    run_controller,
)
from dynamo_snapshot.controllers.orphans import DEFAULT_GRACE_PERIOD, OrphanCollector
from dynamo_snapshot.controllers.podsnapshot import PodSnapshotReconciler, content_to_snapshot
from dynamo_snapshot.runtime import PODS, ControllerBuilder, Manager

PROG: Final = "dynamo-podsnapshot-controller"
DESCRIPTION: Final = """\
Reconciles PodSnapshots (nvidia.com/v1alpha1): binds each one to a cluster-scoped
PodSnapshotContent (podsnapshotcontent-<uid>, labelled with the source pod's node, the node agent's
work order), mirrors the content's Ready / Failed back, and deletes the content when the PodSnapshot
is deleted (finalizer nvidia.com/podsnapshotcontent-cleanup). An orphan collector deletes contents
whose PodSnapshot has been gone for --orphan-grace-period, after confirming it with a live read.

Needs the CRDs of manifests/crds and the ClusterRole of manifests/rbac/podsnapshot-controller.yaml
(with --namespace, its namespaced rules bound by a RoleBinding in each namespace are enough; the
cluster-scoped PodSnapshotContents still need a ClusterRoleBinding). With --namespace, contents of
PodSnapshots in other namespaces are left to the controller that watches those.
Exits 1 with one line on stderr when they are missing or the API server cannot be reached."""


def _seconds(text: str) -> float:
    """`300`, `300s`, `5m` or `1h`."""
    units = {"s": 1, "m": 60, "h": 3600}
    factor = units.get(text[-1:])
    value = float(text[:-1] if factor else text) * (factor or 1)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def parser() -> argparse.ArgumentParser:
    p = build_parser(
        PROG,
        DESCRIPTION,
        leader_election=True,
        default_leader_election_id="dynamo-podsnapshot-controller.nvidia.com",
    )
    own = p.add_argument_group("PodSnapshot controller")
    own.add_argument(
        "--workers", type=int, default=4, metavar="N", help="PodSnapshots reconciled at once."
    )
    own.add_argument(
        "--orphan-grace-period",
        type=_seconds,
        default=DEFAULT_GRACE_PERIOD,
        metavar="DURATION",
        help="delete a PodSnapshotContent whose PodSnapshot has been gone this long "
        "(seconds, or with s/m/h; default 5m).",
    )
    return p


def build(
    mgr: Manager, opts: CommonOptions, args: argparse.Namespace
) -> tuple[PodSnapshotReconciler, OrphanCollector]:
    """Wire the controller and the collector into `mgr` (tests run it in-process too)."""
    recorder = mgr.event_recorder(PROG)
    reconciler = PodSnapshotReconciler(mgr.client, recorder)
    (
        ControllerBuilder(mgr)
        .named("podsnapshot")
        .for_(POD_SNAPSHOTS)
        # Contents are cluster-scoped: every namespace's, whatever --namespace says (the
        # builder drops requests for PodSnapshots outside the watched namespaces).
        .watches(POD_SNAPSHOT_CONTENTS, content_to_snapshot)
        .with_workers(args.workers)
        .complete(reconciler)
    )
    collector = OrphanCollector(
        mgr.client, recorder, grace_period=args.orphan_grace_period, clock=mgr.clock
    )
    mgr.add(collector)
    return reconciler, collector


def needs(opts: CommonOptions) -> list[Need]:
    """What start-up checks: each verb in each watched namespace (cluster-wide without one)."""
    ns = opts.namespaces
    return [
        *needs_in(ns, POD_SNAPSHOTS, ("list", "watch", "get", "patch"), custom=True),
        *needs_in(ns, POD_SNAPSHOTS, ("patch",), subresource="status"),
        Need(POD_SNAPSHOT_CONTENTS, ("list", "watch", "get", "create", "delete"), custom=True),
        *needs_in(ns, PODS, ("get",)),
    ]


async def start(opts: CommonOptions, args: argparse.Namespace) -> None:
    await run_controller(opts, args, PROG, needs(opts), build)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), start, argv)


if __name__ == "__main__":
    sys.exit(main())
