"""Reconcile: the contract between the framework and the code that does the work.

A reconciler is one coroutine: given a :class:`Request` (the namespace and name of one object) it
reads the current state (from the cache), makes the world match the desired state, and returns a
:class:`Result`. It is told *which* object to look at, never *what* changed: it must work from the
state alone, which is what makes it correct after missed events, restarts and retries.

What happens next depends on how it ends:

* returns ``Result()`` (or ``None``): done; the key's backoff history is forgotten.
* returns ``Result(requeue_after=s)``: reconcile again after ``s`` seconds (for polling).
* returns ``Result(requeue=True)``: reconcile again after the rate limiter's backoff.
* raises :class:`TerminalError`: logged and counted, not retried; a later change to the object
  will trigger a new reconcile.
* raises any other exception: logged with the key, counted, retried with per-key exponential
  backoff. The worker keeps running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs

from .objects import object_key

__all__ = ["ReconcileFunc", "Reconciler", "Request", "Result", "TerminalError"]


@attrs.frozen(order=True)
class Request:
    """Names one object to reconcile: ``namespace`` is ``""`` for a cluster-scoped object."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        """``namespace/name`` (or ``name``), the same key the informer store uses."""
        return object_key(self.namespace, self.name)

    def __str__(self) -> str:
        return self.key


@attrs.frozen
class Result:
    """What to do with the key after a successful reconcile (see the module docstring)."""

    requeue: bool = False
    requeue_after: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.requeue_after is not None and self.requeue_after < 0:
            raise ValueError("requeue_after must not be negative")


class TerminalError(Exception):
    """A failure retrying cannot fix (bad spec, unsupported configuration): do not requeue.

    Wrap the cause: ``raise TerminalError("spec.foo is not valid") from err`` or
    ``raise TerminalError(err)``.
    """


class Reconciler(Protocol):
    """Any object with a ``reconcile`` coroutine."""

    async def reconcile(self, request: Request) -> Result | None: ...


ReconcileFunc = Callable[[Request], Awaitable[Result | None]]
"""A reconciler may also be a bare coroutine function."""
