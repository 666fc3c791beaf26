"""One capture, as a background task: lease, dump, Ready, sentinel (SPEC §4.3, §5).

The task holds the Lease ``checkpoint-lease-<checkpointID>`` in the PodSnapshot's namespace
(30 s, renewed every 10 s, holder ``snapshot-agent/<random id>``, released by a delete with UID
and resourceVersion preconditions). Under the lease it re-reads the content (another agent may
have finished it) and the pod (both at once), waits for the gate's capture-eligible label when
that patch was still in flight, checks that the container is still the one resolved
(``ContainerChanged``), removes staging directories a dead agent left for this checkpoint ID,
makes sure the container is not frozen, and dumps (or adopts an existing final directory that
verifies). Ready is persisted with an optimistic lock on the content's resourceVersion, only
while the lease is held; then the ``snapshot-complete`` sentinel is written atomically into the
container's control directory.

Failures are written as ``Failed`` with the SPEC reason (the same optimistic lock: a content
another holder finished is never overwritten); after ``CheckpointFailed`` the container is
killed so that its Job does not hang.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
from opentelemetry.trace import Status, StatusCode

from dynamo_snapshot.agent import artifact
from dynamo_snapshot.agent.container import (
    ContainerFacts,
    NotResolved,
    resolve,
    strip_runtime_prefix,
)
from dynamo_snapshot.agent.cri.client import CriError, CriNotFound
from dynamo_snapshot.agent.executor import CaptureFailed, CaptureRequest
from dynamo_snapshot.agent.freezer import ensure_thawed, freezer_file
from dynamo_snapshot.agent.paths import Destination
from dynamo_snapshot.agent.phases import LEASE, WAIT_READY, Phases
from dynamo_snapshot.agent.together import Pending, both
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.conditions import FALSE, TRUE, set_condition
from dynamo_snapshot.api.podsnapshotcontent import PodSnapshotContent
from dynamo_snapshot.api.resources import POD_SNAPSHOT_CONTENTS
from dynamo_snapshot.runtime import (
    NORMAL,
    PODS,
    WARNING,
    Conflict,
    LeaseLost,
    NotFound,
    Request,
    TaskContext,
    lease_guard,
)

if TYPE_CHECKING:
    from dynamo_snapshot.agent.reconciler import Agent

log = logging.getLogger(__name__)

CONTENTS: Final = POD_SNAPSHOT_CONTENTS
_SENTINEL_TMP: Final = ".snapshot-complete.tmp"
_CONTROL_ENVS: Final = (c.CONTROL_DIR_ENV, c.LEGACY_CONTROL_DIR_ENV)


@dataclass(frozen=True)
class Work:
    """What the reconcile resolved for one capture."""

    content: PodSnapshotContent
    pod: dict[str, Any]
    facts: ContainerFacts
    dest: Destination
    checkpoint_id: str
    # The gate's capture-eligible label patch, when it was still in flight as the capture
    # started: the dump waits for it (and the capture fails with it).
    labelled: Pending | None = None

    @property
    def namespace(self) -> str:
        return self.content.spec.snapshot_ref.namespace

    @property
    def pod_name(self) -> str:
        return self.content.spec.pod_ref.name

    @property
    def pod_uid(self) -> str:
        return str((self.pod.get("metadata") or {}).get("uid") or "")


class Captures:
    """The capture tasks of one agent and what they share (one per checkpoint ID)."""

    def __init__(self, agent: Agent, *, identity: str | None = None) -> None:
        self.agent = agent
        self.identity = identity or f"{c.LEASE_HOLDER_PREFIX}{secrets.token_hex(6)}"
        self._by_id: dict[str, Request] = {}
        self._waiting_since: dict[str, float] = {}
        self._released: set[str] = set()

    # ---- bookkeeping the reconcile uses ----

    def busy(self, checkpoint_id: str, req: Request) -> bool:
        holder = self._by_id.get(checkpoint_id)
        return holder is not None and holder != req

    def note_waiting(self, name: str) -> None:
        self._waiting_since.setdefault(name, time.monotonic())

    def start(self, req: Request, work: Work) -> None:
        waited = time.monotonic() - self._waiting_since.pop(req.name, time.monotonic())
        self._by_id[work.checkpoint_id] = req

        async def run(ctx: TaskContext) -> str:
            try:
                return await self._capture(ctx, work, waited)
            finally:
                if self._by_id.get(work.checkpoint_id) == req:
                    del self._by_id[work.checkpoint_id]

        self.agent.tasks.start(req, run)

    # ---- status writes ----

    async def fail(
        self, obj: Mapping[str, Any], reason: str, message: str, *, retry: bool = False
    ) -> bool:
        """Failed=True with ``reason`` (Ready=False), locked on the read resourceVersion.
        False when the content changed meanwhile (someone else decided); with ``retry`` (a
        decision taken on a cached read) that raises ``Conflict`` instead, so that the
        controller reconciles again on a fresh object."""
        ok = await self._write(obj, ready=False, reason=reason, message=message, retry=retry)
        if ok:
            self.agent.metrics.failures.labels(reason).inc()
            log.warning("content %s failed: %s: %s", obj["metadata"]["name"], reason, message)
            self.agent.mgr.event_recorder("dynamo-snapshot-agent").event(
                obj, WARNING, reason, message[:1000], resource=CONTENTS
            )
        return ok

    async def _write(
        self,
        obj: Mapping[str, Any],
        *,
        ready: bool,
        reason: str,
        message: str,
        retry: bool = False,
    ) -> bool:
        content = PodSnapshotContent.from_dict(obj)
        conds = content.status.conditions
        conds = set_condition(conds, c.CONDITION_READY, TRUE if ready else FALSE, reason, message)
        conds = set_condition(conds, c.CONDITION_FAILED, FALSE if ready else TRUE, reason, message)
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "status": {"conditions": [x.to_dict() for x in conds]},
        }
        try:
            await self.agent.mgr.client.patch_status(CONTENTS, obj["metadata"]["name"], patch)
        except NotFound:
            return False
        except Conflict:
            if retry:
                raise
            return False
        return True

    # ---- the task ----

    async def _capture(self, ctx: TaskContext, work: Work, waited: float) -> str:
        try:
            out = await self._capture_inner(ctx, work, waited)
        except BaseException as err:
            log.warning("capture task of %s ended with %r", work.content.metadata.name, err)
            raise
        log.info("capture task of %s ended: %s", work.content.metadata.name, out)
        return out

    async def _capture_inner(self, ctx: TaskContext, work: Work, waited: float) -> str:
        agent = self.agent
        method = agent.executor.choose_method()
        m = agent.metrics
        tracer = agent.mgr.tracer
        phases = Phases(tracer, lambda p, s: m.phase.labels(method, p).observe(s))
        phases.record(WAIT_READY, waited)
        started = time.monotonic()
        result = "failure"
        m.in_flight.inc()
        with tracer.start_as_current_span(
            "capture",
            attributes={
                "checkpoint.id": work.checkpoint_id,
                "pod": f"{work.namespace}/{work.pod_name}",
                "container.id": work.facts.container_id,
            },
        ) as span:
            try:
                outcome = await self._under_lease(work, phases)
                span.set_attribute("capture.outcome", outcome)
                # Only captures this agent decided count: not one another holder finished.
                result = {"captured": "success", "failed": "failure"}.get(outcome, "")
                return outcome
            except Exception as err:
                span.record_exception(err)
                span.set_status(Status(StatusCode.ERROR, str(err)))
                raise
            finally:
                m.in_flight.dec()
                if result:
                    m.duration.labels(method, result).observe(time.monotonic() - started)

    async def _under_lease(self, work: Work, phases: Phases) -> str:
        agent = self.agent
        s = agent.settings
        t0 = time.monotonic()
        name = str(work.content.metadata.name)
        try:
            async with lease_guard(
                agent.mgr.client,
                f"{c.CHECKPOINT_LEASE_NAME_PREFIX}{work.checkpoint_id}",
                work.namespace,
                identity=self.identity,
                duration=s.lease_duration_seconds,
                renew_interval=s.lease_renew_seconds,
                retry_period=1.0,
                labels={c.LABEL_CHECKPOINT_ID: work.checkpoint_id},
            ) as held:
                phases.record(LEASE, time.monotonic() - t0)
                # Both re-reads are independent: one round trip's wait instead of two. The
                # decisions are still taken in order (gone, terminal, then ContainerChanged).
                try:
                    obj, changed = await both(
                        lambda: agent.mgr.api_reader.get(CONTENTS, name),
                        lambda: self._container_changed(work),
                    )
                except NotFound:
                    return "gone"
                if PodSnapshotContent.from_dict(obj).terminal:
                    return "already-terminal"  # another holder finished it
                if work.labelled is not None:
                    await work.labelled.wait()  # the gate never dumps: its label comes first
                if changed:
                    await self.fail(obj, c.REASON_CONTAINER_CHANGED, changed)
                    return "failed"
                try:
                    path, size, how = await self._dump_or_adopt(work, phases)
                except (CaptureFailed, anyio.get_cancelled_exc_class()) as err:
                    # A lost lease cancels the dump; gRPC raises its own CancelledError (or
                    # CANCELLED), which the guard's cancel scope does not recognise as its own.
                    if held.lost:
                        raise LeaseLost(f"lease lost during the dump: {held.reason}") from None
                    if not isinstance(err, CaptureFailed):
                        raise
                    message = (
                        f"checkpoint of {work.namespace}/{work.pod_name} container "
                        f"{work.facts.name} failed: {err}"
                    )
                    await self.fail(obj, c.REASON_CHECKPOINT_FAILED, message[-4000:])
                    await self._kill(work.facts.container_id)
                    return "failed"
                if held.lost:
                    raise LeaseLost(f"lease lost before Ready: {held.reason}")
                written = await self._write(
                    obj,
                    ready=True,
                    reason=c.REASON_CAPTURED,
                    message=f"checkpoint {work.checkpoint_id} {how} at {path} ({size} bytes)",
                )
                if not written:
                    return "conflict"
                agent.mgr.event_recorder("dynamo-snapshot-agent").event(
                    obj,
                    NORMAL,
                    c.REASON_CAPTURED,
                    f"checkpoint {work.checkpoint_id} at {path}",
                    resource=CONTENTS,
                )
                self._sentinel(work.facts)
                self._released.add(name)
                return "captured"
        except (LeaseLost, BaseExceptionGroup) as raised:
            # The guard raises LeaseLost itself, or inside its task group's exception group
            # when the body raised it first.
            lost = _lease_lost(raised)
            if lost is None:
                raise
            log.warning("capture of %s cancelled: %s", name, lost)
            try:
                obj = await agent.mgr.api_reader.get(CONTENTS, name)
            except NotFound:
                return "gone"
            if not PodSnapshotContent.from_dict(obj).terminal:
                await self.fail(obj, c.REASON_LEASE_CANCELLED, f"{name}: {lost}")
            return "failed"

    async def _container_changed(self, work: Work) -> str | None:
        """Why the container is no longer the one resolved, or None."""
        try:
            pod = await self.agent.mgr.api_reader.get(PODS, work.pod_name, work.namespace)
        except NotFound:
            return f"pod {work.namespace}/{work.pod_name} disappeared before the dump"
        if (pod.get("metadata") or {}).get("uid") != work.pod_uid:
            return f"pod {work.namespace}/{work.pod_name} was replaced before the dump"
        for s in (pod.get("status") or {}).get("containerStatuses") or []:
            if s.get("name") == work.facts.name:
                now = strip_runtime_prefix(str(s.get("containerID") or ""))
                if now != work.facts.container_id:
                    return (
                        f"container {work.facts.name} of {work.namespace}/{work.pod_name} is now "
                        f"{now[:12] or 'gone'}, was {work.facts.container_id[:12]}"
                    )
        return None

    async def _dump_or_adopt(self, work: Work, phases: Phases) -> tuple[Path, int, str]:
        agent = self.agent
        cfg = agent.settings.executor
        dest = work.dest
        # Under the lease every staging directory of this checkpoint ID is a dead attempt's.
        if dest.staging_parent.is_dir():
            for stale in dest.staging_parent.iterdir():
                log.info("removing stale staging directory %s", stale)
                await anyio.to_thread.run_sync(shutil.rmtree, stale, True)
        # A dump killed with its agent may have left the container frozen.
        await ensure_thawed(freezer_file(cfg.cgroup_root, work.facts.cgroups_path), settle=False)
        if dest.final.exists():
            try:
                manifest = await anyio.to_thread.run_sync(
                    lambda: artifact.verify(dest.final, full=True)
                )
            except (OSError, artifact.ArtifactError) as err:
                raise CaptureFailed(
                    f"existing artifact at {dest.final} does not verify: {err}"
                ) from err
            return dest.final, int(manifest.get("totalBytes") or 0), "found complete"
        req = CaptureRequest(
            pod_namespace=work.namespace,
            pod_name=work.pod_name,
            pod_uid=work.pod_uid,
            node_name=agent.node,
            container=work.facts,
        )
        res = await agent.executor.capture(req, dest, phases)
        agent.metrics.bytes_written.labels(res.method).inc(res.bytes_written)
        return res.path, res.bytes_written, f"written by {res.method}"

    # ---- the container ----

    async def _kill(self, container_id: str) -> None:
        with contextlib.suppress(CriError):
            await self.agent.cri.stop_container(container_id, grace_period_s=0)

    async def kill_containers(self, statuses: Iterable[Mapping[str, Any]]) -> None:
        """Kill every still running container of a pod (one of them failed)."""
        for s in statuses:
            if (s.get("state") or {}).get("running") and s.get("containerID"):
                await self._kill(strip_runtime_prefix(str(s["containerID"])))

    def _control_dir(self, facts: ContainerFacts) -> Path | None:
        """The host side of the container's control volume (SPEC §3): the bind source from its
        runtime spec when the agent sees that path (the kubelet's pods directory is mounted),
        else the same directory through the container's root in the host's /proc."""
        env = dict(
            e.split("=", 1) for e in (facts.spec.get("process") or {}).get("env") or [] if "=" in e
        )
        inside = next((env[k] for k in _CONTROL_ENVS if env.get(k)), c.CONTROL_MOUNT_PATH)
        for mount in facts.spec.get("mounts") or []:
            if mount.get("destination") == inside and mount.get("source"):
                source = Path(str(mount["source"]))
                if source.is_dir():
                    return source
                through_proc = (
                    self.agent.settings.executor.host_proc
                    / str(facts.pid)
                    / "root"
                    / inside.lstrip("/")
                )
                return through_proc if through_proc.is_dir() else None
        return None

    def _sentinel(self, facts: ContainerFacts) -> bool:
        """Write ``snapshot-complete`` (temp file, then rename); False if there is no control
        directory to write into."""
        control = self._control_dir(facts)
        if control is None or not control.is_dir():
            log.error("container %s has no control directory: cannot release it", facts.name)
            return False
        tmp = control / _SENTINEL_TMP
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, json.dumps({"completedAt": time.time()}).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, control / c.SNAPSHOT_COMPLETE_FILE)
        return True

    async def rerelease(self, content: PodSnapshotContent) -> None:
        """Ready but maybe not released (the agent died between the two): write the sentinel
        if the target container still runs and does not have it."""
        name = str(content.metadata.name)
        if name in self._released:
            return
        ns, pod_ref = content.spec.snapshot_ref.namespace, content.spec.pod_ref
        try:
            pod = await self.agent.mgr.api_reader.get(PODS, pod_ref.name, ns)
        except NotFound:
            self._released.add(name)
            return
        for s in (pod.get("status") or {}).get("containerStatuses") or []:
            if s.get("name") != pod_ref.target_container or not (s.get("state") or {}).get(
                "running"
            ):
                continue
            try:
                facts = await resolve(self.agent.cri, strip_runtime_prefix(str(s["containerID"])))
            except (NotResolved, CriNotFound, KeyError):
                return
            control = self._control_dir(facts)
            if control is not None and not (control / c.SNAPSHOT_COMPLETE_FILE).exists():
                log.info("re-releasing %s/%s: Ready without sentinel", ns, pod_ref.name)
                self._sentinel(facts)
        self._released.add(name)


def _lease_lost(err: BaseException) -> LeaseLost | None:
    """The LeaseLost behind ``err`` when that is all it holds, else None."""
    if isinstance(err, LeaseLost):
        return err
    if isinstance(err, BaseExceptionGroup):
        match, rest = err.split(LeaseLost)
        if match is not None and rest is None:
            return _lease_lost(match.exceptions[0])
    return None
