"""Leader election: at most one replica of a controller acts at a time, through a Lease.

Replicas race for one ``coordination.k8s.io/v1`` Lease. The holder writes its identity and renews
``renewTime`` every ``retry_period``; the others poll and take the Lease over only when it has not
changed for ``lease_duration``. The rules are client-go's ``leaderelection`` package's:

* **Expiry is judged on the local clock.** A candidate notes *when it saw* the Lease record change,
  not the ``renewTime`` written in it, so clocks that disagree between nodes do not matter.
* **Optimistic locking.** Every write carries the ``resourceVersion`` read just before; of two
  candidates writing at once, one gets ``Conflict`` and stays a follower.
* **Renewal has a deadline.** The leader retries a failed renewal every ``retry_period`` for at most
  ``renew_deadline``; past that it has *lost*: it must stop acting at once, because another replica
  may take over once ``lease_duration`` has passed (``renew_deadline < lease_duration`` leaves the
  margin). controller-runtime then exits the process; the manager does the same.
* **Release on shutdown.** A leader that stops cleanly empties ``holderIdentity`` and sets a 1 s
  duration, so a standby takes over at its next poll instead of waiting out the lease.

Defaults are controller-runtime's: 15 s lease, 10 s renew deadline, 2 s retry period.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import anyio

from .client import Client
from .clock import Clock, RealClock
from .errors import AlreadyExists, Conflict, NotFound
from .resource import LEASES

__all__ = ["LeaderElectionLost", "LeaderElector", "default_identity", "format_micro_time"]

log = logging.getLogger(__name__)

# client-go's JitterFactor: a follower polls every retry_period * (1 + U[0, 1.2)).
_JITTER = 1.2


class LeaderElectionLost(Exception):
    """The lease could not be renewed within the renew deadline: this replica must stop."""


def default_identity() -> str:
    """``hostname_uuid``, as controller-runtime builds it: unique even for replicas on one host."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def format_micro_time(t: dt.datetime) -> str:
    """A Kubernetes ``MicroTime``: RFC 3339 with microseconds, in UTC."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires, renews and releases one Lease. See the module docstring.

    ``acquire()`` returns once this replica leads; ``hold()`` then renews until it fails for
    ``renew_deadline`` and raises :class:`LeaderElectionLost`; ``release()`` hands the Lease back.
    """

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()
        # The last Lease spec we saw and when (local monotonic clock) we saw it change.
        self._observed_spec: Mapping[str, Any] | None = None
        self._observed_at = 0.0
        self._lease: Mapping[str, Any] | None = None
        self._last_renew: float | None = None
        self.is_leader = False

    def __repr__(self) -> str:
        return f"LeaderElector({self.namespace}/{self.name}, {self.identity})"

    # -- the loops --------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Poll (with jitter) until this replica holds the Lease."""
        log.info("attempting to acquire leader lease %s/%s", self.namespace, self.name)
        while not await self._try(self.retry_period * 2):
            await self._clock.sleep(self.retry_period * (1 + self._rng.random() * _JITTER))
        log.info("acquired leader lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def hold(self) -> None:
        """Renew every ``retry_period``; raise :class:`LeaderElectionLost` once renewal has failed
        for ``renew_deadline``."""
        while True:
            await self._clock.sleep(self.retry_period)
            deadline = self._clock.now() + self.renew_deadline
            while True:
                remaining = deadline - self._clock.now()
                if remaining <= 0:
                    self.is_leader = False
                    log.error("failed to renew leader lease %s/%s", self.namespace, self.name)
                    raise LeaderElectionLost(
                        f"lease {self.namespace}/{self.name} not renewed within "
                        f"{self.renew_deadline:g}s"
                    )
                if await self._try(remaining):
                    break
                await self._clock.sleep(min(self.retry_period, deadline - self._clock.now()))

    def healthy(self, tolerance: float = 20.0) -> bool:
        """For ``/healthz``: false when leading but the last renewal is older than the lease
        duration plus ``tolerance`` (a renew loop that is stuck without noticing)."""
        if not self.is_leader or self._last_renew is None:
            return True
        return self._clock.now() - self._last_renew <= self.lease_duration + tolerance

    async def release(self, timeout: float | None = None) -> bool:
        """Give the Lease up if we hold it; True if it was released. Never raises ApiError."""
        if not self.is_leader or self._lease is None:
            return False
        self.is_leader = False
        spec = dict(self._lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return False
        now = format_micro_time(self._clock.wall())
        spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
        lease = {**self._lease, "spec": spec}
        with anyio.move_on_after(timeout if timeout is not None else self.renew_deadline):
            try:
                await self.client.update(LEASES, lease, self.namespace)
                log.info("released leader lease %s/%s", self.namespace, self.name)
                return True
            except Exception as err:
                log.warning(
                    "could not release leader lease %s/%s: %s", self.namespace, self.name, err
                )
        return False

    # -- one attempt ------------------------------------------------------------------------

    async def _try(self, timeout: float) -> bool:
        """One tryAcquireOrRenew, bounded by ``timeout``; a failed request counts as not held."""
        with anyio.move_on_after(max(0.0, timeout)):
            try:
                return await self._try_acquire_or_renew()
            except Exception as err:
                # ApiError, or a transport failure (OSError, aiohttp.ClientError, TimeoutError):
                # either way the lease is not ours this round. Cancellation still propagates.
                log.warning("leader lease %s/%s: %s", self.namespace, self.name, err)
                return False
        return False

    def _desired_spec(self, old: Mapping[str, Any] | None) -> dict[str, Any]:
        now = format_micro_time(self._clock.wall())
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        if old is not None:
            transitions = int(old.get("leaseTransitions") or 0)
            if old.get("holderIdentity") == self.identity:
                spec["acquireTime"] = old.get("acquireTime") or now
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            return await self._create()
        spec: Mapping[str, Any] = lease.get("spec") or {}
        now = self._clock.now()
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = now
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > now:
            self.is_leader = False
            return False  # someone else holds an unexpired lease
        updated = {**lease, "spec": self._desired_spec(spec)}
        try:
            written = await self.client.update(LEASES, updated, self.namespace)
        except Conflict:
            return False  # another candidate wrote first
        self._won(written)
        return True

    async def _create(self) -> bool:
        lease = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._desired_spec(None),
        }
        try:
            written = await self.client.create(LEASES, lease, self.namespace)
        except AlreadyExists:
            return False
        self._won(written)
        return True

    def _won(self, lease: Mapping[str, Any]) -> None:
        self._lease = lease
        self._observed_spec = lease.get("spec") or {}
        self._observed_at = self._last_renew = self._clock.now()
        self.is_leader = True
