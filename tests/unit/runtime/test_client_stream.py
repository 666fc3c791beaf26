"""Client.watch's stream parsing and error mapping, against a FAKE API server (an aiohttp server
on loopback) that cuts events at awkward byte boundaries, which a real server does only by
chance. The real server is exercised in tests/integration/runtime/test_client_api.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from dynamo_snapshot.runtime.client import Client
from dynamo_snapshot.runtime.errors import Gone, NotFound
from dynamo_snapshot.runtime.resource import CONFIGMAPS


def event(etype: str, name: str, size: int = 0) -> bytes:
    obj = {"metadata": {"name": name, "resourceVersion": "1"}, "data": {"b": "x" * size}}
    return orjson.dumps({"type": etype, "object": obj}) + b"\n"


GONE = (
    orjson.dumps(
        {
            "type": "ERROR",
            "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
        }
    )
    + b"\n"
)


async def stream(request: web.Request) -> web.StreamResponse:
    scenario = request.query.get("labelSelector", "")
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    body = event("ADDED", "a") + event("MODIFIED", "big", 300_000) + b"\n" + event("DELETED", "a")
    if scenario == "gone":
        body = event("ADDED", "a") + GONE
    elif scenario == "truncated":
        body = event("ADDED", "a") + event("ADDED", "b")[:20]
    # Odd chunk sizes: every line is split, and some chunks hold the end of one event and the
    # start of the next. (7 bytes at a time would take too long for the 300 KB event.)
    step = 4093 if len(body) > 100_000 else 7
    for i in range(0, len(body), step):
        await resp.write(body[i : i + step])
    await resp.write_eof()
    return resp


async def not_found(request: web.Request) -> web.Response:
    status = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "no such thing"}
    return web.json_response(status, status=404)


class Recorded(Client):
    """The real Client, with its on_request reports kept in ``requests``."""

    def __init__(self, api: ApiClient) -> None:
        self.requests: list[tuple[str, str, str]] = []
        super().__init__(api, on_request=lambda *r: self.requests.append(r))


@pytest.fixture
async def fake_server() -> AsyncIterator[Recorded]:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps", stream)
    app.router.add_get("/api/v1/namespaces/ns/configmaps/missing", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api = ApiClient(Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        yield Recorded(api)
    finally:
        await api.close()
        await runner.cleanup()


async def collect(client: Client, selector: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    s = client.watch(CONFIGMAPS, "ns", resource_version="5", label_selector=selector)
    async with contextlib.aclosing(s):
        async for etype, obj in s:
            out.append((etype, obj["metadata"]["name"], len(obj["data"]["b"])))
    return out


async def test_events_split_across_chunks_are_reassembled(fake_server: Recorded) -> None:
    assert await collect(fake_server, "") == [
        ("ADDED", "a", 0),
        ("MODIFIED", "big", 300_000),
        ("DELETED", "a", 0),
    ]
    assert fake_server.requests == [("200", "GET", fake_server.host)]


async def test_error_event_raises_its_typed_error(fake_server: Client) -> None:
    with pytest.raises(Gone) as info:
        await collect(fake_server, "gone")
    assert info.value.message == "too old"


async def test_a_stream_cut_mid_event_is_a_transport_error(fake_server: Client) -> None:
    with pytest.raises(aiohttp.ClientPayloadError, match="middle of an event"):
        await collect(fake_server, "truncated")


async def test_non_2xx_answers_raise_typed_errors_and_are_counted(fake_server: Recorded) -> None:
    with pytest.raises(NotFound, match="no such thing"):
        await fake_server.get(CONFIGMAPS, "missing", "ns")
    assert fake_server.requests == [("404", "GET", fake_server.host)]


async def test_unreachable_server_is_counted_as_error() -> None:
    seen: list[tuple[str, str, str]] = []
    api = ApiClient(Configuration(host="http://127.0.0.1:1"))
    try:
        client = Client(api, on_request=lambda c, m, h: seen.append((c, m, h)))
        with pytest.raises(aiohttp.ClientConnectionError):
            await client.get(CONFIGMAPS, "x", "ns")
    finally:
        await api.close()
    assert seen == [("<error>", "GET", "127.0.0.1:1")]
