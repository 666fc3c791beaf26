"""Metrics: the framework's Prometheus series, named exactly as controller-runtime names them.

One :class:`Metrics` object owns one ``prometheus_client.CollectorRegistry`` (the manager makes it;
nothing is registered globally), so two managers in one process, or two tests, never share
counters. Dashboards and alerts written for controller-runtime operators work unchanged, because
the names, label names and label values are the same:

======================================================  ==============================  =========
series                                                  labels                          type
======================================================  ==============================  =========
``controller_runtime_reconcile_total``                  controller, result              counter
``controller_runtime_reconcile_errors_total``           controller                      counter
``controller_runtime_terminal_reconcile_errors_total``  controller                      counter
``controller_runtime_reconcile_panics_total``           controller                      counter
``controller_runtime_reconcile_time_seconds``           controller                      histogram
``controller_runtime_max_concurrent_reconciles``        controller                      gauge
``controller_runtime_active_workers``                   controller                      gauge
``controller_runtime_reconcile_timeouts_total``         controller                      counter
``workqueue_depth``                                     name, controller, priority      gauge
``workqueue_adds_total``                                name, controller                counter
``workqueue_queue_duration_seconds``                    name, controller                histogram
``workqueue_work_duration_seconds``                     name, controller                histogram
``workqueue_unfinished_work_seconds``                   name, controller                gauge
``workqueue_longest_running_processor_seconds``         name, controller                gauge
``workqueue_retries_total``                             name, controller                counter
``leader_election_master_status``                       name                            gauge
``rest_client_requests_total``                          code, method, host              counter
``informer_skipped_objects_total``                      resource                        counter
======================================================  ==============================  =========

**Your own metrics** go on the same registry, so that ``/metrics`` serves them:
``mgr.metrics.counter("checkpoints_captured", "...", ["result"])``, ``.gauge(...)``,
``.histogram(..., buckets=...)`` return ordinary prometheus_client metrics. Asking again for the
same name with the same type and labels returns the same metric (two controllers may share one);
anything else under a taken name is a ``ValueError``. Metrics created at module level with
prometheus_client's default registry do **not** appear: the manager serves only its own registry.

``result`` is one of ``success``, ``error``, ``requeue``, ``requeue_after``. prometheus-client
adds the ``_total`` suffix to counters itself (and a ``_created`` sample next to each), so the
counters are declared without it. Process metrics (``process_*``) are included, as the Go
runtime's are in controller-runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ControllerMetrics", "Metrics", "WorkqueueMetrics"]

RESULTS = ("success", "error", "requeue", "requeue_after")

# controller-runtime's reconcile_time_seconds buckets: fine-grained up to 1 s, then coarser to 60 s.
RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
    0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30,
    40, 50, 60,
)  # fmt: skip
_M = TypeVar("_M", Counter, Gauge, Histogram)

# client-go's workqueue buckets: ExponentialBuckets(10e-9, 10, 12), i.e. 10 ns .. 1000 s.
WORKQUEUE_BUCKETS = tuple(1e-8 * 10**i for i in range(12))


class Metrics:
    """All framework series in one registry. See the module docstring."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process:
            prometheus_client.ProcessCollector(registry=r)
            prometheus_client.PlatformCollector(registry=r)
            prometheus_client.GCCollector(registry=r)
        c = ["controller"]
        self.reconcile_total = Counter(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            c,
            registry=r,
        )
        self.terminal_reconcile_errors = Counter(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller",
            c,
            registry=r,
        )
        self.reconcile_panics = Counter(
            "controller_runtime_reconcile_panics",
            "Total number of reconciliation panics per controller",
            c,
            registry=r,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            c,
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.reconcile_timeouts = Counter(
            "controller_runtime_reconcile_timeouts",
            "Total number of reconciliation timeouts per controller",
            c,
            registry=r,
        )
        self.max_concurrent_reconciles = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            c,
            registry=r,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            c,
            registry=r,
        )
        q = ["name", "controller"]
        # controller-runtime v0.22 labels depth by priority too ("" for a plain queue).
        self.wq_depth = Gauge(
            "workqueue_depth",
            "Current depth of workqueue",
            ["name", "controller", "priority"],
            registry=r,
        )
        self.wq_adds = Counter(
            "workqueue_adds", "Total number of adds handled by workqueue", q, registry=r
        )
        self.wq_queue_duration = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            q,
            buckets=WORKQUEUE_BUCKETS,
            registry=r,
        )
        self.wq_work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            q,
            buckets=WORKQUEUE_BUCKETS,
            registry=r,
        )
        self.wq_unfinished = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been "
            "observed by work_duration. Large values indicate stuck threads. One can deduce the "
            "number of stuck threads by observing the rate at which this increases.",
            q,
            registry=r,
        )
        self.wq_longest = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            q,
            registry=r,
        )
        self.wq_retries = Counter(
            "workqueue_retries", "Total number of retries handled by workqueue", q, registry=r
        )
        self.leader_election_master_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates "
            "backup, 1 indicates master. 'name' is the string used to identify the lease.",
            ["name"],
            registry=r,
        )
        self.rest_client_requests = Counter(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"],
            registry=r,
        )
        self.informer_skipped_objects = Counter(
            "informer_skipped_objects",
            "Objects an informer could not cache because its transform or an index function "
            "raised, per resource",
            ["resource"],
            registry=r,
        )
        self._custom: dict[str, tuple[type[Any], tuple[str, ...], Any]] = {}

    # -- custom metrics on the served registry ------------------------------------------------

    def _custom_metric(
        self, kind: type[_M], name: str, documentation: str, labels: Sequence[str], **kw: Any
    ) -> _M:
        labelnames = tuple(labels)
        known = self._custom.get(name)
        if known is not None:
            known_kind, known_labels, metric = known
            if known_kind is not kind or known_labels != labelnames:
                raise ValueError(
                    f"metric {name!r} exists as a {known_kind.__name__} with labels "
                    f"{list(known_labels)}"
                )
            found: _M = metric
            return found
        metric = kind(name, documentation, labelnames, registry=self.registry, **kw)
        self._custom[name] = (kind, labelnames, metric)
        return metric

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter served on ``/metrics`` (declare it without ``_total``; it is added)."""
        return self._custom_metric(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge served on ``/metrics``."""
        return self._custom_metric(Gauge, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    ) -> Histogram:
        """A histogram served on ``/metrics``."""
        return self._custom_metric(Histogram, name, documentation, labels, buckets=tuple(buckets))

    def on_informer_skip(self, resource: str, err: BaseException) -> None:
        """The informers' ``on_skip`` callback."""
        self.informer_skipped_objects.labels(resource).inc()

    def controller(self, name: str, max_concurrent_reconciles: int) -> ControllerMetrics:
        """The per-controller children, created at zero so every series exists from the start."""
        return ControllerMetrics(self, name, max_concurrent_reconciles)

    def workqueue(
        self, name: str, in_flight: Callable[[], tuple[float, float]]
    ) -> WorkqueueMetrics:
        """The queue series for controller ``name``; ``in_flight`` gives (total, longest) seconds
        of work in progress, read at scrape time."""
        return WorkqueueMetrics(self, name, in_flight)

    def on_rest_request(self, code: str, method: str, host: str) -> None:
        """The ``Client``'s ``on_request`` callback."""
        self.rest_client_requests.labels(code, method, host).inc()

    def set_leader(self, lease_name: str, leading: bool) -> None:
        self.leader_election_master_status.labels(lease_name).set(1 if leading else 0)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of the registry and its content type."""
        body = prometheus_client.generate_latest(self.registry)
        return body, prometheus_client.CONTENT_TYPE_LATEST


class ControllerMetrics:
    """The controller_runtime_* children of one controller."""

    def __init__(self, m: Metrics, name: str, max_concurrent_reconciles: int) -> None:
        self.total = {res: m.reconcile_total.labels(name, res) for res in RESULTS}
        self.errors = m.reconcile_errors.labels(name)
        self.terminal_errors = m.terminal_reconcile_errors.labels(name)
        self.panics = m.reconcile_panics.labels(name)
        self.timeouts = m.reconcile_timeouts.labels(name)
        self.time = m.reconcile_time.labels(name)
        self.active_workers = m.active_workers.labels(name)
        m.max_concurrent_reconciles.labels(name).set(max_concurrent_reconciles)
        self.active_workers.set(0)


class WorkqueueMetrics:
    """The workqueue_* children of one controller's queue; implements ``workqueue.QueueMetrics``."""

    def __init__(self, m: Metrics, name: str, in_flight: Callable[[], tuple[float, float]]) -> None:
        # controller-runtime labels its queues with the controller name under both label names.
        labels = (name, name)
        self._depth = m.wq_depth.labels(name, name, "")
        self._adds = m.wq_adds.labels(*labels)
        self._queue_duration = m.wq_queue_duration.labels(*labels)
        self._work_duration = m.wq_work_duration.labels(*labels)
        self._retries = m.wq_retries.labels(*labels)
        # Read at scrape time instead of updated by a timer task: always current, no extra task.
        m.wq_unfinished.labels(*labels).set_function(lambda: in_flight()[0])
        m.wq_longest.labels(*labels).set_function(lambda: in_flight()[1])

    def added(self) -> None:
        self._adds.inc()

    def depth(self, n: int) -> None:
        self._depth.set(n)

    def handed_out(self, queued_seconds: float) -> None:
        self._queue_duration.observe(queued_seconds)

    def finished(self, work_seconds: float) -> None:
        self._work_duration.observe(work_seconds)

    def retried(self) -> None:
        self._retries.inc()
