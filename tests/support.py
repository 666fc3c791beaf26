"""Small helpers shared by tests: waiting on a condition with a deadline (never on time alone)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import msgspec
import orjson
import pytest
from kubernetes_asyncio.client import ApiClient

from dynamo_snapshot.runtime.client import RawList

Impersonate = Callable[..., AbstractAsyncContextManager[ApiClient]]


async def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll an async or sync predicate until it returns a truthy value; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(interval)


def raw_list(items: list[dict[str, Any]], resource_version: str) -> RawList:
    """A list answer as the framework's Client.list_raw returns it: items as undecoded JSON.
    For the FAKE API servers of unit tests."""
    return RawList(
        items=[msgspec.Raw(orjson.dumps(i)) for i in items],
        metadata={"resourceVersion": resource_version},
    )
