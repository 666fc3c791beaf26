"""The framework: controller-runtime's and client-go's semantics, in asyncio. It knows Kubernetes
and nothing of snapshots.

Import what a reconciler author uses from here (``from dynamo_snapshot.runtime import ...``); the
modules behind it (reflector, store, informer, workqueue) are internal.

Layers, each importing only those below it:
  builder -> manager -> kubeclient / cache / controller / tasks -> handler, predicate -> reconcile
  -> client. cache = informer (reflector -> store -> handlers); controller = workqueue +
  ratelimiter + workers.
Cross-cutting: objects, errors, resource, reader, selectors, writes, clock, backoff, metrics,
tracing, events, leaderelection, leaseguard.
"""

from .builder import ControllerBuilder
from .cache import CacheSyncTimeout, InformerCache, NamespaceNotCached, NoInformer
from .client import Client as RestClient
from .clock import Clock, FakeClock, RealClock
from .controller import Controller
from .errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    InternalError,
    Invalid,
    NotFound,
    ServerTimeout,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
    Unauthorized,
    retryable,
)
from .events import NORMAL, WARNING, EventRecorder
from .handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    Handler,
    MapFunc,
)
from .informer import DeletedFinalStateUnknown
from .kubeclient import KubeClient
from .leaderelection import LeaderElectionLost
from .leaseguard import HeldLease, LeaseHeld, LeaseLost, lease_guard
from .manager import Manager, ManagerOptions, Runnable
from .metrics import Metrics
from .objects import (
    AlreadyOwned,
    Obj,
    has_finalizer,
    key_of,
    merge_patch,
    meta,
    name_of,
    namespace_of,
    object_key,
    set_controller_reference,
    split_key,
)
from .predicate import (
    Funcs,
    Predicate,
    and_,
    annotations_changed,
    generation_changed,
    labels_changed,
    new_predicate,
    not_,
    or_,
    resource_version_changed,
)
from .ratelimiter import RateLimiter
from .reader import IndexQuery, LiveReader, Reader, View
from .reconcile import ReconcileFunc, Reconciler, Request, Result, TerminalError
from .resource import (
    CONFIGMAPS,
    CUSTOMRESOURCEDEFINITIONS,
    EVENTS,
    EVENTS_V1,
    JOBS,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    SERVICEACCOUNTS,
    Resource,
)
from .store import IndexFunc
from .tasks import BackgroundTasks, Channel, TaskContext, TaskOutcome
from .writes import add_finalizer, patch_status_if_changed, remove_finalizer, retry_on_conflict

__all__ = [
    "CONFIGMAPS",
    "CUSTOMRESOURCEDEFINITIONS",
    "EVENTS",
    "EVENTS_V1",
    "JOBS",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "NORMAL",
    "PODS",
    "SECRETS",
    "SERVICEACCOUNTS",
    "WARNING",
    "AlreadyExists",
    "AlreadyOwned",
    "ApiError",
    "BackgroundTasks",
    "BadRequest",
    "CacheSyncTimeout",
    "Channel",
    "Clock",
    "Conflict",
    "Controller",
    "ControllerBuilder",
    "DeletedFinalStateUnknown",
    "EnqueueRequestForObject",
    "EnqueueRequestForOwner",
    "EnqueueRequestsFromMapFunc",
    "EventRecorder",
    "FakeClock",
    "Forbidden",
    "Funcs",
    "Gone",
    "Handler",
    "HeldLease",
    "IndexFunc",
    "IndexQuery",
    "InformerCache",
    "InternalError",
    "Invalid",
    "KubeClient",
    "LeaderElectionLost",
    "LeaseHeld",
    "LeaseLost",
    "LiveReader",
    "Manager",
    "ManagerOptions",
    "MapFunc",
    "Metrics",
    "NamespaceNotCached",
    "NoInformer",
    "NotFound",
    "Obj",
    "Predicate",
    "RateLimiter",
    "Reader",
    "RealClock",
    "ReconcileFunc",
    "Reconciler",
    "Request",
    "Resource",
    "RestClient",
    "Result",
    "Runnable",
    "ServerTimeout",
    "ServiceUnavailable",
    "TaskContext",
    "TaskOutcome",
    "TerminalError",
    "Timeout",
    "TooManyRequests",
    "Unauthorized",
    "View",
    "add_finalizer",
    "and_",
    "annotations_changed",
    "generation_changed",
    "has_finalizer",
    "key_of",
    "labels_changed",
    "lease_guard",
    "merge_patch",
    "meta",
    "name_of",
    "namespace_of",
    "new_predicate",
    "not_",
    "object_key",
    "or_",
    "patch_status_if_changed",
    "remove_finalizer",
    "resource_version_changed",
    "retry_on_conflict",
    "retryable",
    "set_controller_reference",
    "split_key",
]
