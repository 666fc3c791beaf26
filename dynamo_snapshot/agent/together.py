"""Run independent awaitables at once, failing as one: the first failure cancels the rest and is
raised bare (not wrapped in an exception group), so callers keep catching the exceptions they
would catch from a sequential call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.abc

A = TypeVar("A")
B = TypeVar("B")


async def run_all(*fns: Callable[[], Awaitable[object]]) -> None:
    """Run all; if one fails the others are cancelled and the first failure is raised bare."""
    errors: list[Exception] = []

    async def guard(fn: Callable[[], Awaitable[object]], tg: anyio.abc.TaskGroup) -> None:
        try:
            await fn()
        except Exception as err:
            errors.append(err)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for fn in fns:
            tg.start_soon(guard, fn, tg)
    if errors:
        raise errors[0]


async def both(
    first: Callable[[], Awaitable[A]], second: Callable[[], Awaitable[B]]
) -> tuple[A, B]:
    """The results of two independent calls made at once (see :func:`run_all`)."""
    out_a: list[A] = []
    out_b: list[B] = []

    async def run_a() -> None:
        out_a.append(await first())

    async def run_b() -> None:
        out_b.append(await second())

    await run_all(run_a, run_b)
    return out_a[0], out_b[0]


class Pending:
    """The outcome of a call that another task makes: :meth:`wait` returns once it succeeded
    and raises ``RuntimeError`` (caused by its error) once it failed or was cancelled."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._done = anyio.Event()
        self._error: BaseException | None = None

    def succeeded(self) -> None:
        self._done.set()

    def failed(self, err: BaseException) -> None:
        self._error = err
        self._done.set()

    async def wait(self) -> None:
        await self._done.wait()
        if self._error is not None:
            raise RuntimeError(f"{self.what} failed: {self._error!r}") from self._error
