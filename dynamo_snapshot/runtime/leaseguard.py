"""Lease guard: hold a ``coordination.k8s.io/v1`` Lease for the length of a block of work.

::

    async with lease_guard(mgr.client, "capture-node-a", "ns", duration=15) as lease:
        await capture()     # cancelled if the lease is lost; LeaseLost is raised at the end

Where leader election keeps one *process* in charge, a lease guard makes one piece of work
exclusive across processes (one capture per container, one writer per artifact):

* **Acquire.** The Lease is created, or taken over when it is free (no holder), ours (same
  ``identity``), or expired. Expiry is judged as client-go judges it: by when *we* last saw the
  Lease record change, on our monotonic clock, never by the ``renewTime`` another machine's clock
  wrote; so taking over a stale Lease waits one ``duration`` after first seeing it. Every write
  carries the ``resourceVersion`` just read: of two candidates, one gets ``Conflict`` and
  retries. With ``acquire_timeout`` set, :class:`LeaseHeld` is raised when it passes (``0``: one
  attempt).
* **Renew in the background** every ``renew_interval`` (default ``duration / 3``). When renewal
  has failed for ``renew_deadline`` (default ``2/3 * duration``), or another holder is found, or
  the Lease was deleted, the lease is *lost*: the body is cancelled at once (another process may
  be acting within ``duration - renew_deadline`` seconds) and :class:`LeaseLost` is raised when
  the ``async with`` exits.
* **Release** on exit by deleting the Lease with UID and resourceVersion preconditions: it is
  deleted only if it is still exactly what we last wrote, never someone else's.

``holder identity`` defaults to ``hostname_uuid`` (unique per guard); pass a stable one (the node
name) to let a restarted process re-acquire its own Lease without waiting.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import anyio
import attrs

from .client import Client
from .clock import Clock, RealClock
from .errors import AlreadyExists, Conflict, NotFound, retryable
from .kubeclient import KubeClient
from .leaderelection import default_identity, format_micro_time
from .resource import LEASES

__all__ = ["HeldLease", "LeaseHeld", "LeaseLost", "lease_guard"]

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The guarded Lease was lost while the body ran; the body was cancelled."""


class LeaseHeld(Exception):
    """Another holder kept the Lease until ``acquire_timeout`` passed."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"lease {name} is held by {holder}")
        self.holder = holder


@attrs.define
class HeldLease:
    """What the body of a :func:`lease_guard` sees."""

    name: str
    namespace: str
    identity: str
    lease: Mapping[str, Any]
    """The Lease as last written by us."""
    lost: bool = False
    reason: str = ""
    renewals: int = 0
    _body: anyio.CancelScope | None = None

    def _lose(self, reason: str) -> None:
        if not self.lost:
            self.lost = True
            self.reason = reason
            log.error("lease %s/%s lost: %s", self.namespace, self.name, reason)
            if self._body is not None:
                self._body.cancel()


def _spec(
    identity: str, duration: float, clock: Clock, old: Mapping[str, Any] | None
) -> dict[str, Any]:
    now = format_micro_time(clock.wall())
    transitions = int((old or {}).get("leaseTransitions") or 0)
    mine = bool(old) and (old or {}).get("holderIdentity") == identity
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(duration)),
        "acquireTime": (old or {}).get("acquireTime") or now if mine else now,
        "renewTime": now,
        "leaseTransitions": transitions if (mine or old is None) else transitions + 1,
    }


def _live(client: KubeClient | Client) -> Client:
    return client.live if isinstance(client, KubeClient) else client


async def _acquire(
    client: Client,
    name: str,
    namespace: str,
    identity: str,
    duration: float,
    retry_period: float,
    acquire_timeout: float | None,
    labels: Mapping[str, str] | None,
    clock: Clock,
) -> dict[str, Any]:
    deadline = None if acquire_timeout is None else clock.now() + acquire_timeout
    observed: Mapping[str, Any] | None = None
    observed_at = clock.now()
    spec: Mapping[str, Any] | None
    while True:
        try:
            return await _try_acquire(client, name, namespace, identity, duration, labels, clock)
        except _Held as held:
            spec = held.spec
        except Exception as err:
            if not _transient(err):
                raise  # RBAC, validation: retrying will not help
            log.warning("lease %s/%s: acquire failed: %s", namespace, name, err)
            spec = observed
        now = clock.now()
        if spec != observed:
            observed, observed_at = spec, now
        holder = str((spec or {}).get("holderIdentity") or "")
        if deadline is not None and now >= deadline:
            raise LeaseHeld(f"{namespace}/{name}", holder)
        wait = retry_period
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        await clock.sleep(wait)
        # Taken over once it has not changed for its duration, on our clock.
        held_for = float((spec or {}).get("leaseDurationSeconds") or duration)
        if spec is not None and clock.now() - observed_at >= held_for:
            try:
                return await _take_over(client, namespace, identity, duration, clock, spec, name)
            except _Held:
                continue


class _Held(Exception):
    """Internal: the Lease is held by someone else (``spec``)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        super().__init__("held")
        self.spec = spec


def _transient(err: BaseException) -> bool:
    transport = (OSError, aiohttp.ClientError, TimeoutError)
    return retryable(err) or isinstance(err, (Conflict, *transport))


async def _try_acquire(
    client: Client,
    name: str,
    namespace: str,
    identity: str,
    duration: float,
    labels: Mapping[str, str] | None,
    clock: Clock,
) -> dict[str, Any]:
    """Create the Lease, or take it when it is free or ours; ``_Held`` when someone holds it.

    Create first: a guarded piece of work usually has a Lease of its own name that nobody
    holds yet, and a create that finds one costs no more than the read it saves."""
    body = {
        "apiVersion": LEASES.api_version,
        "kind": LEASES.kind,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": _spec(identity, duration, clock, None),
    }
    try:
        return await client.create(LEASES, body, namespace)
    except AlreadyExists:
        pass  # look at theirs
    while True:
        try:
            lease = await client.get(LEASES, name, namespace)
        except NotFound:
            try:
                return await client.create(LEASES, body, namespace)
            except AlreadyExists:
                continue  # someone created it first: look at theirs
        spec: Mapping[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != identity:
            raise _Held(spec)
        return await client.update(
            LEASES, {**lease, "spec": _spec(identity, duration, clock, spec)}, namespace
        )


async def _take_over(
    client: Client,
    namespace: str,
    identity: str,
    duration: float,
    clock: Clock,
    expected: Mapping[str, Any],
    name: str,
) -> dict[str, Any]:
    """Take an expired Lease, if it is still exactly as we last saw it."""
    lease = await client.get(LEASES, name, namespace)
    spec: Mapping[str, Any] = lease.get("spec") or {}
    if spec != expected:
        raise _Held(spec)  # renewed meanwhile: watch it again
    try:
        return await client.update(
            LEASES, {**lease, "spec": _spec(identity, duration, clock, spec)}, namespace
        )
    except Conflict:
        raise _Held(spec) from None


async def _renew(
    client: Client,
    held: HeldLease,
    duration: float,
    renew_interval: float,
    renew_deadline: float,
    retry_period: float,
    clock: Clock,
) -> None:
    last_ok = clock.now()
    while not held.lost:
        await clock.sleep(renew_interval)
        while True:
            remaining = last_ok + renew_deadline - clock.now()
            if remaining <= 0:
                held._lose(f"not renewed within {renew_deadline:g}s")
                return
            try:
                with anyio.fail_after(remaining):
                    spec = held.lease.get("spec") or {}
                    written = await client.update(
                        LEASES,
                        {**held.lease, "spec": _spec(held.identity, duration, clock, spec)},
                        held.namespace,
                    )
                held.lease = written
                held.renewals += 1
                last_ok = clock.now()
                break
            except NotFound:
                held._lose("the Lease was deleted")
                return
            except Conflict:
                # Someone wrote it: still ours (a retried write of our own) or taken?
                try:
                    fresh = await client.get(LEASES, held.name, held.namespace)
                except NotFound:
                    held._lose("the Lease was deleted")
                    return
                except Exception as err:
                    log.warning("lease %s: %s", held.name, err)
                    await clock.sleep(min(retry_period, max(0.0, remaining)))
                    continue
                holder = (fresh.get("spec") or {}).get("holderIdentity")
                if holder != held.identity:
                    held._lose(f"taken over by {holder or 'nobody'}")
                    return
                held.lease = fresh
            except Exception as err:
                # Transport failure, 5xx or our own timeout: retry until the deadline.
                log.warning("lease %s/%s: renew failed: %s", held.namespace, held.name, err)
                await clock.sleep(min(retry_period, max(0.0, remaining)))


async def _release(client: Client, held: HeldLease, timeout: float) -> None:
    meta = held.lease.get("metadata") or {}
    with anyio.move_on_after(timeout, shield=True):
        try:
            await client.delete(
                LEASES,
                held.name,
                held.namespace,
                uid=meta.get("uid"),
                resource_version=meta.get("resourceVersion"),
            )
            log.info("released lease %s/%s", held.namespace, held.name)
        except (Conflict, NotFound):
            pass  # no longer the Lease we wrote: not ours to delete
        except Exception as err:
            log.warning("lease %s/%s: release failed: %s", held.namespace, held.name, err)


@contextlib.asynccontextmanager
async def lease_guard(
    client: KubeClient | Client,
    name: str,
    namespace: str,
    *,
    identity: str | None = None,
    duration: float = 15.0,
    renew_interval: float | None = None,
    renew_deadline: float | None = None,
    retry_period: float = 2.0,
    acquire_timeout: float | None = None,
    labels: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[HeldLease]:
    """Hold Lease ``namespace/name`` while the body runs. See the module docstring."""
    live = _live(client)
    clock = clock or RealClock()
    identity = identity or default_identity()
    renew_interval = renew_interval if renew_interval is not None else duration / 3
    renew_deadline = renew_deadline if renew_deadline is not None else duration * 2 / 3
    if not 0 < renew_interval < renew_deadline < duration:
        raise ValueError("need 0 < renew_interval < renew_deadline < duration")
    lease = await _acquire(
        live, name, namespace, identity, duration, retry_period, acquire_timeout, labels, clock
    )
    held = HeldLease(name, namespace, identity, lease)
    log.info("acquired lease %s/%s as %s", namespace, name, identity)
    try:
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as body:
                held._body = body
                renew = (duration, renew_interval, renew_deadline, retry_period, clock)
                tg.start_soon(_renew, live, held, *renew)
                try:
                    yield held
                finally:
                    tg.cancel_scope.cancel()
    finally:
        if not held.lost:
            await _release(live, held, renew_deadline)
    if held.lost:
        raise LeaseLost(f"lease {namespace}/{name} lost: {held.reason}")
