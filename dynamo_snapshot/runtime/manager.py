"""Manager: runs a process's controllers and everything they share, from start to clean exit.

A :class:`Manager` owns the shared pieces: ``client`` (a
:class:`~dynamo_snapshot.runtime.kubeclient.KubeClient`: reads from the cache, writes to the API
server), ``api_reader`` (live reads with the same contract), ``live`` (the raw REST
:class:`~dynamo_snapshot.runtime.client.Client`; every request counted in
``rest_client_requests_total``), ``cache`` (the
:class:`~dynamo_snapshot.runtime.cache.InformerCache`; ``add_index`` registers an index), the
``metrics`` registry (custom metrics too), the tracer, the event broadcaster and, when enabled, the
leader elector. Controllers are added to it (usually through
:class:`~dynamo_snapshot.runtime.builder.ControllerBuilder`) and :meth:`Manager.run` runs the lot:

1. serve ``/metrics`` and ``/healthz`` + ``/readyz`` (``/readyz`` fails until the caches synced);
2. start the informers and wait for their first list (at most ``cache_sync_timeout``; the error
   names the resources that did not sync, which almost always means missing RBAC);
3. start the runnables that do not need leadership, then acquire the Lease (if leader election
   is on) and start the controllers;
4. on SIGTERM / SIGINT or :meth:`Manager.stop`: controllers stop taking keys, reconciles in flight
   get ``graceful_shutdown_timeout`` to finish (then are cancelled), the Lease is released so a
   standby takes over at once, buffered Events are flushed, and ``run`` returns. A second signal
   cancels everything at once.

If the Lease cannot be renewed, controllers are cancelled immediately (another replica may already
be acting) and ``run`` raises :class:`~dynamo_snapshot.runtime.leaderelection.LeaderElectionLost`:
like controller-runtime, the process should exit and be restarted as a follower.

Every task belongs to a task group under ``run``; when ``run`` returns, nothing is left running.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import anyio
import anyio.abc
import attrs
from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client import CollectorRegistry

from . import tracing
from .cache import CacheSyncTimeout, InformerCache
from .client import Client
from .clock import Clock, RealClock
from .events import EventBroadcaster, EventRecorder
from .httpserve import HealthCheck, HttpServers, parse_bind_address, serve_http
from .kubeclient import KubeClient
from .leaderelection import LeaderElectionLost, LeaderElector
from .metrics import Metrics
from .reader import LiveReader
from .resource import Resource
from .store import IndexFunc

__all__ = ["Manager", "ManagerOptions", "Runnable", "parse_bind_address"]

log = logging.getLogger(__name__)


class Runnable(Protocol):
    """Something the manager runs: ``run`` until ``stop`` is called (or it is cancelled)."""

    need_leader_election: bool

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


@attrs.frozen
class ManagerOptions:
    """How a manager runs. Defaults are controller-runtime's.

    Bind addresses are ``host:port`` (``:8080`` for every interface, ``127.0.0.1:0`` for a free
    port); ``"0"`` disables that server. When both addresses are equal one server serves all.
    """

    metrics_bind_address: str = ":8080"
    health_probe_bind_address: str = ":8081"
    leader_election: bool = False
    leader_election_id: str = ""
    leader_election_namespace: str = "default"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str | None = None
    graceful_shutdown_timeout: float = 30.0
    cache_sync_timeout: float = 120.0
    namespace: str | None = None
    """Restrict the cache to this one namespace (the single-namespace form of ``namespaces``)."""
    namespaces: tuple[str, ...] = attrs.field(default=(), converter=_names)
    """Restrict the cache to these namespaces, as controller-runtime's
    ``cache.Options.DefaultNamespaces``: one list and watch per namespace for namespaced kinds
    (namespaced Roles suffice), reads elsewhere fail; cluster-scoped kinds are unaffected.
    Empty (and no ``namespace``): all namespaces. The leader-election Lease is not affected."""
    service_name: str = "dynamo-snapshot"
    """The tracing service name (unless OTEL_SERVICE_NAME says otherwise)."""
    handle_signals: bool = True
    """Install SIGTERM/SIGINT handlers (only possible in the main thread)."""
    event_flush_timeout: float = 5.0
    global_tracer_provider: bool = False
    """Install the manager's tracer provider as OpenTelemetry's process-global one, so that
    gRPC and aiohttp instrumentations report through it."""

    @property
    def watched_namespaces(self) -> frozenset[str] | None:
        """``namespace`` and ``namespaces`` together; None: all namespaces."""
        names = frozenset((*self.namespaces, self.namespace or "")) - {""}
        return names or None


@attrs.define
class _Slot:
    """One runnable and the scope it runs in."""

    runnable: Runnable
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    started: bool = False


class Manager:
    """Owns and runs the shared pieces of a controller process. See the module docstring."""

    def __init__(
        self,
        api_client: Any,
        options: ManagerOptions | None = None,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
        field_manager: str | None = None,
    ) -> None:
        self.options = opts = options or ManagerOptions()
        if opts.leader_election and not opts.leader_election_id:
            raise ValueError("leader election needs a leader_election_id (the Lease name)")
        self.clock: Clock = clock or RealClock()
        self.metrics = Metrics(registry)
        self.live = Client(
            api_client, on_request=self.metrics.on_rest_request, field_manager=field_manager
        )
        self.cache = InformerCache(
            self.live, on_skip=self.metrics.on_informer_skip, namespaces=opts.watched_namespaces
        )
        self.api_reader = LiveReader(self.live, self.cache.index_function)
        self.client = KubeClient(self.cache, self.live, self.api_reader)
        self.events = EventBroadcaster(self.live, clock=self.clock)
        self._own_provider = tracer_provider is None
        self.tracer_provider = tracer_provider or tracing.tracer_provider_from_env(
            opts.service_name
        )
        self.tracer: Tracer = tracing.tracer(self.tracer_provider)
        if opts.global_tracer_provider:
            tracing.install_global(self.tracer_provider)
        self.elector: LeaderElector | None = None
        if opts.leader_election:
            self.elector = LeaderElector(
                self.live,
                name=opts.leader_election_id,
                namespace=opts.leader_election_namespace,
                identity=opts.identity,
                lease_duration=opts.lease_duration,
                renew_deadline=opts.renew_deadline,
                retry_period=opts.retry_period,
                clock=self.clock,
            )
            self.metrics.set_leader(opts.leader_election_id, False)
        self._runnables: list[Runnable] = []
        self._slots: list[_Slot] = []
        self._healthz: dict[str, HealthCheck] = {"ping": lambda: True}
        self._synced = False
        # Ready once the first sync completed (even with no informers), and while it holds.
        self._readyz: dict[str, HealthCheck] = {
            "informers": lambda: self._synced and self.cache.has_synced()
        }
        if self.elector is not None:
            self._healthz["leader-election"] = self.elector.healthy
        self._stop: anyio.Event | None = None
        self._stop_requested = False
        self._stop_scopes: set[anyio.CancelScope] = set()
        self._running = False
        self._errors: list[BaseException] = []
        self._http: HttpServers | None = None
        self.metrics_address: tuple[str, int] | None = None
        self.health_address: tuple[str, int] | None = None

    # -- wiring -----------------------------------------------------------------------------

    def add(self, runnable: Runnable) -> None:
        """Run ``runnable`` with the manager (controllers wait for leadership if they need it)."""
        if self._running:
            raise RuntimeError("add runnables before Manager.run")
        self._runnables.append(runnable)

    @property
    def runnables(self) -> tuple[Runnable, ...]:
        """What :meth:`add` was given, in order."""
        return tuple(self._runnables)

    def add_index(self, resource: Resource, name: str, fn: IndexFunc) -> None:
        """Maintain index ``name`` of ``resource`` in the cache (see ``InformerCache.add_index``);
        read it with ``client.list(resource, index=(name, value))``."""
        self.cache.add_index(resource, name, fn)

    def event_recorder(self, component: str) -> EventRecorder:
        """A recorder whose Events name ``component`` as their source."""
        return self.events.recorder(component)

    def add_healthz_check(self, name: str, check: HealthCheck) -> None:
        self._healthz[name] = check

    def add_readyz_check(self, name: str, check: HealthCheck) -> None:
        self._readyz[name] = check

    @property
    def is_leader(self) -> bool:
        """True when leader election is off or this replica holds the Lease."""
        return self.elector is None or self.elector.is_leader

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self._stop_requested = True
        if self._stop is not None:
            self._stop.set()
        for scope in list(self._stop_scopes):
            scope.cancel()

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped (see the module docstring); raises what made it stop early."""
        if self._running:
            raise RuntimeError("Manager.run called twice")
        self._running = True
        # Events and cancel scopes belong to the running event loop: made here, not in add().
        self._slots = [_Slot(r) for r in self._runnables]
        self._stop = anyio.Event()
        if self._stop_requested:
            self._stop.set()
        try:
            # Before any task starts, so that a taken port fails run() with a plain OSError.
            self._http = await serve_http(
                self.options.metrics_bind_address,
                self.options.health_probe_bind_address,
                self.metrics,
                self._healthz,
                self._readyz,
            )
            self.metrics_address = self._http.metrics_address
            self.health_address = self._http.health_address
            async with anyio.create_task_group() as root:
                if self.options.handle_signals:
                    root.start_soon(self._signals, root.cancel_scope, name="signals")
                await self._run_infrastructure()
                root.cancel_scope.cancel()  # the signal watcher
        except BaseExceptionGroup as group:
            # Task groups wrap even a lone failure; callers should see the failure itself.
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if self._http is not None:
                    await self._http.close()
                if self._own_provider:
                    await tracing.shutdown(self.tracer_provider)
        if self._errors:
            raise self._errors[0]

    async def _signals(self, root: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stop_requested:
                    log.warning("second signal %s: exiting now", signal.Signals(signum).name)
                    root.cancel()
                    return
                log.info("received %s: shutting down", signal.Signals(signum).name)
                self.stop()

    async def _run_infrastructure(self) -> None:
        """Cache and event sender around the workload; they outlive the controllers."""
        async with anyio.create_task_group() as infra:
            infra.start_soon(self.cache.run, name="informer cache")
            events_done = anyio.Event()

            async def send_events() -> None:
                try:
                    await self.events.run()
                finally:
                    events_done.set()

            infra.start_soon(send_events, name="event broadcaster")
            try:
                await self._run_workload()
            finally:
                # Flush the Events the controllers recorded on their way out, briefly.
                self.events.stop()
                with anyio.move_on_after(self.options.event_flush_timeout, shield=True):
                    await events_done.wait()
                infra.cancel_scope.cancel()

    async def _until_stop(self, fn: Callable[[], Awaitable[Any]]) -> bool:
        """Await ``fn()`` unless a stop is requested first (or meanwhile); True if it completed."""
        with anyio.CancelScope() as scope:
            self._stop_scopes.add(scope)
            try:
                if not self._stop_requested:
                    await fn()
                    return True
            finally:
                self._stop_scopes.discard(scope)
        return False

    async def _run_workload(self) -> None:
        assert self._stop is not None
        timeout = self.options.cache_sync_timeout
        try:
            if not await self._until_stop(lambda: self.cache.wait_for_sync(timeout)):
                return
        except CacheSyncTimeout as err:
            log.error("%s", err)
            self._errors.append(err)
            return
        self._synced = True
        log.info("caches synced")
        async with anyio.create_task_group() as tg:
            followers = [s for s in self._slots if not s.runnable.need_leader_election]
            leaders = [s for s in self._slots if s.runnable.need_leader_election]
            for slot in followers:
                self._start_slot(tg, slot)
            if self.elector is not None and leaders:
                if await self._until_stop(self.elector.acquire):
                    await self._lead(tg, leaders)
                    return
            else:
                for slot in leaders:
                    self._start_slot(tg, slot)
                await self._until_stop(self._stop.wait)
            await self._shutdown_runnables()

    async def _lead(self, tg: anyio.abc.TaskGroup, leaders: list[_Slot]) -> None:
        """Run the leader-only runnables while renewing the Lease, until stop or loss.

        The renewal runs in its own task for as long as any leader runnable may still act: a
        graceful shutdown waits up to ``graceful_shutdown_timeout`` for reconciles in flight, and
        a Lease left unrenewed meanwhile would let a standby take over while they still write
        (two leaders). Only once every runnable has stopped is the renewal ended and the Lease
        released."""
        assert self.elector is not None
        elector = self.elector
        self.metrics.set_leader(elector.name, True)
        lost = anyio.Event()

        async def renew() -> None:
            try:
                await elector.hold()
            except LeaderElectionLost as err:
                # Another replica may take over any moment now: stop acting at once.
                for slot in leaders:
                    slot.scope.cancel()
                self._errors.append(
                    LeaderElectionLost(f"lost leader lease {self.options.leader_election_id}")
                )
                log.error("%s", err)
                lost.set()

        renewal = anyio.CancelScope()

        async def run_renewal() -> None:
            with renewal:
                await renew()

        tg.start_soon(run_renewal, name="leader lease renewal")
        for slot in leaders:
            self._start_slot(tg, slot)
        await self._until_stop(lost.wait)
        try:
            await self._shutdown_runnables()
        finally:
            renewal.cancel()
            if elector.is_leader:
                await elector.release(timeout=self.options.renew_deadline)
            self.metrics.set_leader(elector.name, False)

    def _start_slot(self, tg: anyio.abc.TaskGroup, slot: _Slot) -> None:
        slot.started = True
        tg.start_soon(self._run_slot, slot, name=repr(slot.runnable))

    async def _run_slot(self, slot: _Slot) -> None:
        try:
            with slot.scope:
                await slot.runnable.run()
        except Exception as err:
            # A failed runnable stops the whole manager, gracefully, and run() re-raises it.
            log.exception("runnable %r failed", slot.runnable)
            self._errors.append(err)
            self.stop()
        finally:
            slot.done.set()

    async def _shutdown_runnables(self) -> None:
        """Stop every runnable; give them the graceful timeout (on the manager's clock), then
        cancel what is left. A second signal cancels the wait itself."""
        started = [slot for slot in self._slots if slot.started]
        for slot in started:
            slot.runnable.stop()
        all_done = anyio.Event()

        async def wait_all() -> None:
            for slot in started:
                await slot.done.wait()
            all_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_all)
            finished = await self.clock.wait(all_done, self.options.graceful_shutdown_timeout)
            tg.cancel_scope.cancel()
        if not finished:
            log.warning(
                "graceful shutdown timed out after %gs; cancelling reconciles in flight",
                self.options.graceful_shutdown_timeout,
            )
        for slot in self._slots:
            slot.scope.cancel()
        # Wait until the cancelled ones have unwound too: only then may the Lease be released.
        for slot in started:
            await slot.done.wait()
