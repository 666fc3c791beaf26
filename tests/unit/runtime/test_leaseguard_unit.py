"""Lease guard failure handling with the in-memory Lease stand-in (FakeLeaseClient): a transient
failure while acquiring is retried, a refusal (RBAC) is not, and a lost Lease is not deleted.
The real round trips are in tests/integration/runtime/test_toolkit_live.py."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from dynamo_snapshot.runtime import Forbidden, LeaseLost, lease_guard
from dynamo_snapshot.runtime.resource import Resource
from tests.unit.runtime.test_leaderelection_unit import FakeLeaseClient


class Leases(FakeLeaseClient):
    """The stand-in, plus delete with preconditions and scripted failures of the acquiring
    calls (``get`` and ``create``: the guard tries a create first)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[BaseException] = []
        self.deleted = 0

    async def get(self, resource: Resource, name: str, namespace: str) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        return await super().get(resource, name, namespace)

    async def create(self, resource: Resource, body: dict[str, Any], namespace: str) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        return await super().create(resource, body, namespace)

    async def delete(self, resource: Resource, name: str, namespace: str, **pre: Any) -> Any:
        assert self.lease is not None
        assert pre["resource_version"] == self.lease["metadata"]["resourceVersion"]
        self.lease = None
        self.deleted += 1
        return {}


async def test_transient_failures_while_acquiring_are_retried() -> None:
    leases = Leases()
    leases.failures = [OSError("connection refused"), TimeoutError()]
    with anyio.fail_after(5):
        async with lease_guard(
            leases,  # type: ignore[arg-type]
            "l",
            "ns",
            identity="me",
            duration=3.0,
            retry_period=0.01,
        ) as held:
            assert leases.holder == "me"
            assert held.identity == "me"
    assert leases.deleted == 1


async def test_a_refusal_is_not_retried() -> None:
    leases = Leases()
    leases.failures = [Forbidden(403, "Forbidden", "leases is forbidden")]
    with pytest.raises(Forbidden):
        async with lease_guard(leases, "l", "ns", retry_period=0.01):  # type: ignore[arg-type]
            pass


async def test_losing_renewal_for_the_deadline_cancels_the_body_and_keeps_the_lease() -> None:
    leases = Leases()
    reached: list[str] = []

    async def body() -> None:
        async with lease_guard(
            leases,  # type: ignore[arg-type]
            "l",
            "ns",
            identity="me",
            duration=0.6,
            renew_interval=0.1,
            renew_deadline=0.3,
            retry_period=0.05,
        ):
            leases.down = True  # every renewal fails from now on
            try:
                await anyio.sleep(10)
            finally:
                reached.append("cancelled")

    with anyio.fail_after(5), pytest.raises(LeaseLost, match="not renewed"):
        await body()
    assert reached == ["cancelled"]
    assert leases.deleted == 0
