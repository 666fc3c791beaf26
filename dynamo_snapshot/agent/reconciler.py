"""The node agent's reconciler (SPEC §4.3): gate, then capture, for the contents of this node.

Wiring (``Agent.wire``): one controller For PodSnapshotContents labelled
``nvidia.com/snapshot-node=<node>``, which also watches this node's capture-eligible pods (label +
``spec.nodeName`` field selector) mapped to their contents through the cache index
``<snapshotRef.namespace>/<podRef.name>``. Informer callbacks only enqueue (and note when a
content was first seen); every API call happens in a reconcile or in a capture task.

A reconcile of one content reads in SPEC order:

1. terminal (Ready / Failed): nothing to do, except re-releasing the workload when Ready was
   persisted but the ``snapshot-complete`` sentinel is missing (an agent died in between);
2. **gate**: live-read the pod: missing → ``SourcePodNotFound``; UID mismatch →
   ``StalePodReference``; deleting / Succeeded / Failed → ``SourcePodGone``; else label it
   capture-eligible (its event brings the content back). While that patch travels, step 3 is
   taken on the pod just read; a capture it starts may take its Lease meanwhile but dumps only
   once the label is on, and fails if the patch fails;
3. **capture** decision: the oldest non-terminal content of the pod; the checkpoint ID
   (``MissingCheckpointID`` / ``InvalidCheckpointID``); one capture per ID on this agent; a
   container that terminated non-zero → the others killed, ``CheckpointContainerFailed``; the
   target container (``InvalidTargetContainer``), Ready, resolved through CRI
   (``ContainerNotResolved``); the destination (``InvalidDestination``);
4. the capture itself runs as a background task (``capture.py``), never in a worker.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from dynamo_snapshot.agent import capture as cap
from dynamo_snapshot.agent.config import AgentConfig
from dynamo_snapshot.agent.container import NotResolved, resolve, strip_runtime_prefix
from dynamo_snapshot.agent.cri.client import CriClient, CriError
from dynamo_snapshot.agent.executor import Executor
from dynamo_snapshot.agent.metrics import CaptureMetrics
from dynamo_snapshot.agent.paths import (
    DestinationError,
    resolve_destination,
    validate_checkpoint_id,
)
from dynamo_snapshot.agent.phases import QUEUE_WAIT
from dynamo_snapshot.agent.together import Pending, both
from dynamo_snapshot.api import constants as c
from dynamo_snapshot.api.podsnapshotcontent import PodSnapshotContent
from dynamo_snapshot.api.wire import ApiDecodeError
from dynamo_snapshot.runtime import (
    PODS,
    BackgroundTasks,
    Controller,
    ControllerBuilder,
    DeletedFinalStateUnknown,
    Manager,
    NotFound,
    Request,
    Result,
    View,
)

log = logging.getLogger(__name__)

POD_INDEX: Final = "snapshot-pod"
# While another content of this agent captures the same checkpoint ID.
_BUSY_REQUEUE_S: Final = 2.0


def content_pod_key(obj: Mapping[str, Any]) -> list[str]:
    """Index function: ``<snapshotRef.namespace>/<podRef.name>`` of a content."""
    spec = obj.get("spec") or {}
    ns = (spec.get("snapshotRef") or {}).get("namespace")
    name = ((spec.get("source") or {}).get("podRef") or {}).get("name")
    return [f"{ns}/{name}"] if ns and name else []


class _FirstSeen:
    """Informer handler that only notes when a content was first seen (queue-wait phase)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def on_add(self, obj: Mapping[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if name:
            self.at.setdefault(str(name), time.monotonic())

    def on_update(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.on_add(new)

    def on_delete(self, obj: Mapping[str, Any] | DeletedFinalStateUnknown) -> None:
        real = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        self.at.pop(str((real.get("metadata") or {}).get("name")), None)


class Agent:
    """The node agent: its controller, capture tasks and state. See the module docstring."""

    def __init__(
        self,
        mgr: Manager,
        cri: CriClient,
        settings: AgentConfig,
        *,
        identity: str | None = None,
    ) -> None:
        self.mgr = mgr
        self.cri = cri
        self.settings = settings
        self.node = settings.node_name
        self.executor = Executor(cri, settings.executor)
        self.metrics = CaptureMetrics(mgr.metrics)
        self.tasks = BackgroundTasks(
            "capture", grace_period=settings.shutdown_grace_seconds, need_leader_election=False
        )
        self.content_view = View(labels=f"{c.LABEL_SNAPSHOT_NODE}={self.node}")
        self.pod_view = View(
            labels=f"{c.LABEL_CAPTURE_ELIGIBLE}={c.LABEL_TRUE}", fields=f"spec.nodeName={self.node}"
        )
        self.captures = cap.Captures(self, identity=identity)
        self._first_seen = _FirstSeen()
        self._queue_wait_done: set[str] = set()
        self.controller: Controller | None = None

    # ---- wiring ----

    def wire(self) -> Controller:
        mgr = self.mgr
        mgr.add_index(cap.CONTENTS, POD_INDEX, content_pod_key)
        self.controller = (
            ControllerBuilder(mgr)
            .named("snapshot-agent")
            .for_(cap.CONTENTS, label_selector=self.content_view.labels)
            .watches(
                PODS,
                self._contents_of_pod,
                label_selector=self.pod_view.labels,
                field_selector=self.pod_view.fields,
            )
            .with_background_tasks(self.tasks)
            .with_workers(self.settings.workers)
            .without_leader_election()
            .complete(self.reconcile)
        )
        mgr.cache.informer_for(cap.CONTENTS, None, self.content_view.labels).add_event_handler(
            self._first_seen
        )
        return self.controller

    def _contents_of_pod(self, pod: Mapping[str, Any]) -> Iterable[Request]:
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        contents = self.mgr.cache.list_nowait(
            cap.CONTENTS, index=(POD_INDEX, key), view=self.content_view
        )
        return [Request("", str(o["metadata"]["name"])) for o in contents]

    # ---- reconcile ----

    async def reconcile(self, req: Request) -> Result | None:
        try:
            obj = await self.mgr.client.get(cap.CONTENTS, req.name, view=self.content_view)
        except NotFound:
            self._queue_wait_done.discard(req.name)
            return None
        outcome = self.tasks.pop_result(req)
        if outcome is not None and outcome.error is not None:
            # Not a capture failure (those are written as Failed): an API or runtime error the
            # task could not report. Raise it so the controller retries with backoff.
            raise outcome.error
        if self.tasks.running(req):
            return None
        try:
            content = PodSnapshotContent.from_dict(obj)
        except ApiDecodeError as err:
            log.warning("content %s is malformed, skipped: %s", req.name, err)
            return None
        if content.spec.node_name != self.node:
            return None
        self._note_queue_wait(req.name)
        if content.terminal:
            if content.ready:
                await self.captures.rerelease(content)
            return None
        return await self._gate_and_capture(req, obj, content)

    def _note_queue_wait(self, name: str) -> None:
        if name in self._queue_wait_done:
            return
        seen = self._first_seen.at.get(name)
        if seen is not None:
            self._queue_wait_done.add(name)
            self.metrics.phase.labels(self.executor.choose_method(), QUEUE_WAIT).observe(
                time.monotonic() - seen
            )

    async def _gate_and_capture(
        self, req: Request, obj: dict[str, Any], content: PodSnapshotContent
    ) -> Result | None:
        ns = content.spec.snapshot_ref.namespace
        pod_ref = content.spec.pod_ref
        # Decisions below are taken on the cached content: a Conflict retries the reconcile.
        fail = functools.partial(self.captures.fail, retry=True)
        # -- gate --
        try:
            pod = await self.mgr.api_reader.get(PODS, pod_ref.name, ns)
        except NotFound:
            await fail(obj, c.REASON_SOURCE_POD_NOT_FOUND, f"pod {ns}/{pod_ref.name} not found")
            return None
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if pod_ref.uid and meta.get("uid") != pod_ref.uid:
            await fail(
                obj,
                c.REASON_STALE_POD_REFERENCE,
                f"pod {ns}/{pod_ref.name} has UID {meta.get('uid')}, the content names "
                f"{pod_ref.uid}",
            )
            return None
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            why = "is being deleted" if meta.get("deletionTimestamp") else status.get("phase")
            await fail(obj, c.REASON_SOURCE_POD_GONE, f"pod {ns}/{pod_ref.name} {why}")
            return None
        if (meta.get("labels") or {}).get(c.LABEL_CAPTURE_ELIGIBLE) == c.LABEL_TRUE:
            return await self._decide(req, obj, content, pod, None)
        # Label the pod, and take the capture decision on the pod just read live while the
        # patch travels: the pod's event would bring the content back for it, one round trip
        # later. A capture started meanwhile acquires its Lease, but dumps only once the label
        # is on (the gate never dumps); a failed patch fails that capture and this reconcile.
        labelled = Pending(f"labelling pod {ns}/{pod_ref.name} capture-eligible")

        async def label() -> None:
            try:
                await self.mgr.client.patch_merge(
                    PODS,
                    pod_ref.name,
                    {"metadata": {"labels": {c.LABEL_CAPTURE_ELIGIBLE: c.LABEL_TRUE}}},
                    ns,
                )
            except BaseException as err:
                labelled.failed(err)
                raise
            labelled.succeeded()

        result, _ = await both(lambda: self._decide(req, obj, content, pod, labelled), label)
        return result

    async def _decide(
        self,
        req: Request,
        obj: dict[str, Any],
        content: PodSnapshotContent,
        pod: dict[str, Any],
        labelled: Pending | None,
    ) -> Result | None:
        """The capture decision (SPEC §4.3 "Capture") on ``pod``; starts the capture task."""
        ns = content.spec.snapshot_ref.namespace
        pod_ref = content.spec.pod_ref
        fail = functools.partial(self.captures.fail, retry=True)
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        labels = meta.get("labels") or {}
        oldest = self._oldest_open_content(f"{ns}/{pod_ref.name}")
        if oldest is not None and oldest != req.name:
            return None
        try:
            checkpoint_id = validate_checkpoint_id(labels.get(c.LABEL_CHECKPOINT_ID))
        except DestinationError as err:
            await fail(obj, err.reason, f"pod {ns}/{pod_ref.name}: {err}")
            return None
        if self.captures.busy(checkpoint_id, req):
            return Result(requeue_after=_BUSY_REQUEUE_S)
        statuses = list(status.get("containerStatuses") or [])
        crashed = [
            s
            for s in statuses
            if ((s.get("state") or {}).get("terminated") or {}).get("exitCode", 0) != 0
        ]
        if crashed:
            names = ", ".join(
                f"{s['name']} (exit {s['state']['terminated']['exitCode']})" for s in crashed
            )
            await self.captures.kill_containers(statuses)
            await fail(
                obj,
                c.REASON_CHECKPOINT_CONTAINER_FAILED,
                f"pod {ns}/{pod_ref.name}: container {names} terminated; the others were killed",
            )
            return None
        target = pod_ref.target_container
        spec_names = [x.get("name") for x in (pod.get("spec") or {}).get("containers") or []]
        if target is None or target not in spec_names:
            await fail(
                obj,
                c.REASON_INVALID_TARGET_CONTAINER,
                f"pod {ns}/{pod_ref.name} has no container {target!r} "
                f"(containers: {', '.join(str(n) for n in spec_names)})",
            )
            return None
        target_status = next((s for s in statuses if s.get("name") == target), None)
        self.captures.note_waiting(req.name)
        if not target_status or not target_status.get("ready"):
            return None  # a pod update (container Ready) brings it back
        container_id = strip_runtime_prefix(str(target_status.get("containerID") or ""))
        try:
            if not container_id:
                raise NotResolved(f"container {target!r} has no containerID in the pod status")
            facts = await resolve(self.cri, container_id)
        except NotResolved as err:
            await fail(obj, c.REASON_CONTAINER_NOT_RESOLVED, f"pod {ns}/{pod_ref.name}: {err}")
            return None
        except CriError as err:
            raise RuntimeError(f"CRI: {err}") from err
        annotations = meta.get("annotations") or {}
        try:
            dest = resolve_destination(
                self.settings.executor.storage_root,
                annotations.get(c.ANNOTATION_STORAGE_BASE_PATH),
                checkpoint_id,
                annotations.get(c.ANNOTATION_ARTIFACT_VERSION) or c.DEFAULT_ARTIFACT_VERSION,
            )
        except DestinationError as err:
            await fail(obj, err.reason, f"pod {ns}/{pod_ref.name}: {err}")
            return None
        self.captures.start(req, cap.Work(content, pod, facts, dest, checkpoint_id, labelled))
        return None

    def _oldest_open_content(self, pod_key: str) -> str | None:
        objs = self.mgr.cache.list_nowait(
            cap.CONTENTS, index=(POD_INDEX, pod_key), view=self.content_view
        )
        open_: list[tuple[str, str]] = []
        for o in objs:
            try:
                if PodSnapshotContent.from_dict(o).terminal:
                    continue
            except ApiDecodeError:
                continue
            m = o.get("metadata") or {}
            open_.append((str(m.get("creationTimestamp") or ""), str(m.get("name"))))
        return min(open_)[1] if open_ else None
