"""`dynamo-checkpoint-controller`: the console script of the checkpoint controller (SPEC §4.1)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.resources import DYNAMO_CHECKPOINTS, POD_SNAPSHOTS
from dynamo_snapshot.cmd.common import (
    CommonOptions,
    Need,
    build_parser,
    needs_in,
    run,
    run_controller,
)
from dynamo_snapshot.controllers.checkpoint import (
    INDEX_CHECKPOINT_ID,
    INDEX_CONTROLLER_UID,
    OWNED_JOB_SELECTOR,
    SOURCE_POD_SELECTOR,
    CheckpointReconciler,
    checkpoint_id_index,
    controller_uid_index,
    source_pod_owner,
)
from dynamo_snapshot.runtime import (
    JOBS,
    PODS,
    ControllerBuilder,
    Funcs,
    Manager,
    annotations_changed,
    generation_changed,
    labels_changed,
    or_,
)

PROG: Final = "dynamo-checkpoint-controller"
DESCRIPTION: Final = f"""\
Reconciles DynamoCheckpoints (nvidia.com/v1alpha1): for each one it resolves the checkpoint ID,
runs the workload in a checkpoint Job (restartPolicy Never, backoffLimit 0, the control volume,
the readiness probe replaced by "the workload wrote ready-for-snapshot"), creates the PodSnapshot
of the Job's pod once it exists, and reports Ready with the checkpoint ID when the PodSnapshot is
Ready and the Job Complete, or Failed with a reason. It caches DynamoCheckpoints, their Jobs and
PodSnapshots, and only the pods labelled {c.LABEL_IS_CHECKPOINT_SOURCE}=true.

Needs the CRDs of manifests/crds and the ClusterRole of manifests/rbac/checkpoint-controller.yaml
(with --namespace, its rules bound by a RoleBinding in each namespace are enough).
Exits 1 with one line on stderr when they are missing or the API server cannot be reached."""


def parser() -> argparse.ArgumentParser:
    p = build_parser(
        PROG,
        DESCRIPTION,
        leader_election=True,
        default_leader_election_id="dynamo-checkpoint-controller.nvidia.com",
    )
    own = p.add_argument_group("checkpoint controller")
    own.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="DynamoCheckpoints reconciled at once (default 4).",
    )
    own.add_argument(
        "--job-seccomp-profile",
        metavar="PATH",
        default=c.SECCOMP_LOCALHOST_PROFILE,
        help="localhost seccomp profile of checkpoint Job pods, relative to the kubelet's "
        "seccomp root (installed by the agent DaemonSet; it blocks io_uring, which CRIU cannot "
        f"dump). '' leaves the pod template's own. Default {c.SECCOMP_LOCALHOST_PROFILE}.",
    )
    return p


def build(mgr: Manager, opts: CommonOptions, args: argparse.Namespace) -> CheckpointReconciler:
    """Wire the controller into `mgr` (also used by tests that run it in-process)."""
    mgr.add_index(PODS, INDEX_CONTROLLER_UID, controller_uid_index)
    mgr.add_index(POD_SNAPSHOTS, INDEX_CONTROLLER_UID, controller_uid_index)
    mgr.add_index(DYNAMO_CHECKPOINTS, INDEX_CHECKPOINT_ID, checkpoint_id_index)
    reconciler = CheckpointReconciler(
        mgr.client,
        mgr.event_recorder(PROG),
        # None: every namespace the manager watches (they name its informers).
        view_namespace=None,
        seccomp_profile=args.job_seccomp_profile or None,
    )
    (
        ControllerBuilder(mgr)
        .named("dynamocheckpoint")
        # Our own status writes change neither generation, labels nor annotations: no echo.
        .for_(
            DYNAMO_CHECKPOINTS,
            predicates=[or_(generation_changed(), labels_changed(), annotations_changed())],
        )
        .owns(JOBS, label_selector=OWNED_JOB_SELECTOR)
        .owns(POD_SNAPSHOTS)
        # Only the creation of a checkpoint-source pod matters (its Job and PodSnapshot report
        # the rest), and only those pods are cached.
        .watches(
            PODS,
            source_pod_owner,
            label_selector=SOURCE_POD_SELECTOR,
            predicates=[Funcs(on_update=lambda old, new: False, on_delete=lambda obj: False)],
        )
        .with_workers(args.workers)
        .complete(reconciler)
    )
    return reconciler


def needs(opts: CommonOptions) -> list[Need]:
    """What start-up checks: each verb in each watched namespace (cluster-wide without one)."""
    ns = opts.namespaces
    return [
        *needs_in(ns, DYNAMO_CHECKPOINTS, ("list", "watch", "patch"), custom=True),
        *needs_in(ns, DYNAMO_CHECKPOINTS, ("patch",), subresource="status"),
        *needs_in(ns, POD_SNAPSHOTS, ("list", "watch", "get", "create", "delete"), custom=True),
        *needs_in(ns, JOBS, ("list", "watch", "get", "create", "delete")),
        *needs_in(ns, PODS, ("list", "watch")),
    ]


async def start(opts: CommonOptions, args: argparse.Namespace) -> None:
    await run_controller(opts, args, PROG, needs(opts), build)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), start, argv)


if __name__ == "__main__":
    sys.exit(main())
