"""Client: raw-JSON access to the Kubernetes API over kubernetes_asyncio's connection.

:class:`Client` speaks REST for any :class:`~dynamo_snapshot.runtime.resource.Resource`: get, list,
create, update (PUT, optimistic lock on ``metadata.resourceVersion``), JSON merge patch, the status
subresource, delete with preconditions, and watch. Objects go in and come out as plain JSON
``dict`` s parsed with orjson: kubernetes_asyncio's generated models are never built, because
deserialising them costs more than the whole rest of a reconcile.

kubernetes_asyncio still does what it is good at: the :class:`ApiClient` carries the kubeconfig
(server, TLS, client certificates, bearer/exec tokens) and owns the aiohttp session, which this
client reuses for its requests.

Failures the server answers come back as the typed errors of
:mod:`dynamo_snapshot.runtime.errors` (``NotFound``, ``Conflict``, ...). Every request, answered or
not, is reported to the optional ``on_request(code, method, host)`` callback; ``code`` is the HTTP
status or ``"<error>"`` when no answer came, as client-go's ``rest_client_requests_total`` counts.

Watches are read line by line from the chunked response: each line is one event
``{"type": ..., "object": ...}``. An ``ERROR`` event raises its typed error (``Gone`` for a
compacted resourceVersion).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import msgspec
import orjson

from .errors import ApiError, error_from_response, error_from_status
from .listbody import LazyList, lazy_list
from .resource import Resource

__all__ = ["Client", "OnRequest"]

OnRequest = Callable[[str, str, str], None]
"""Callback ``(code, method, host)`` invoked once per request."""

_JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"

WATCH_IDLE_TIMEOUT = 90.0
"""Seconds without a byte after which a watch stream is considered dead (see ``watch``)."""


class RawList(msgspec.Struct):
    """A list response whose items are undecoded JSON (zero-copy slices of the body)."""

    items: list[msgspec.Raw] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


_RAW_LIST_DECODER: Final = msgspec.json.Decoder(RawList)


def decode_list(payload: bytes) -> RawList | LazyList:
    """A list body, item by item when it has the apiserver's shape (see listbody: no single
    decoding pass over a body of hundreds of MB), else as raw item slices decoded at once."""
    lazy = lazy_list(payload)
    if lazy is not None:
        return lazy
    result: RawList = _RAW_LIST_DECODER.decode(payload)
    return result


def _list_params(
    label_selector: str | None,
    field_selector: str | None,
    limit: int | None,
    continue_: str | None,
    resource_version: str | None,
) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    if limit:
        params["limit"] = str(limit)
    if continue_:
        params["continue"] = continue_
    if resource_version is not None:
        params["resourceVersion"] = resource_version
    return params


def _namespace_of(obj: Mapping[str, Any], namespace: str | None) -> str | None:
    return namespace or (obj.get("metadata") or {}).get("namespace")


def _name_of(obj: Mapping[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    return str(name)


class Client:
    """Raw-JSON Kubernetes client. See the module docstring.

    ``api_client`` is a kubernetes_asyncio ``ApiClient``; its lifetime (``close()``) stays with the
    caller. ``field_manager`` is sent on writes when set. ``request_timeout`` bounds non-watch
    requests (seconds).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        on_request: OnRequest | None = None,
        field_manager: str | None = None,
        user_agent: str | None = "dynamo-snapshot",
        request_timeout: float = 60.0,
    ) -> None:
        self.api_client = api_client
        self._config = api_client.configuration
        self._base = str(self._config.host).rstrip("/")
        self.host = urlsplit(self._base).netloc
        self._on_request = on_request
        self._field_manager = field_manager
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def _session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = self.api_client.rest_client.pool_manager
        return session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {"Accept": _JSON}
        headers.update(self.api_client.default_headers)
        if self._user_agent:
            headers["User-Agent"] = self._user_agent
        if content_type:
            headers["Content-Type"] = content_type
        # Bearer tokens (static, or refreshed by kubeconfig exec plugins through the hook).
        for setting in (await self._config.auth_settings()).values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        if self._config.username and self._config.password:
            headers["Authorization"] = self._config.get_basic_auth_token()
        return headers

    def _count(self, code: str, method: str) -> None:
        if self._on_request is not None:
            self._on_request(code, method, self.host)

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        rest = self.api_client.rest_client
        if getattr(rest, "server_hostname", None):
            kwargs["server_hostname"] = rest.server_hostname
        if getattr(rest, "proxy", None):
            kwargs["proxy"] = rest.proxy
        if getattr(rest, "proxy_headers", None):
            kwargs["proxy_headers"] = rest.proxy_headers
        return kwargs

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        raw: bool = False,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = await self._headers(content_type or (_JSON if data is not None else None))
        try:
            async with self._session.request(
                method,
                self._base + path,
                params=params or None,
                data=data,
                headers=headers,
                timeout=timeout or self._timeout,
                **self._request_kwargs(),
            ) as resp:
                payload = await resp.read()
                status = resp.status
                reason = resp.reason or ""
        except Exception:
            # No answer (refused, reset, timed out). Cancellation is not a request failure.
            self._count("<error>", method)
            raise
        self._count(str(status), method)
        if not 200 <= status < 300:
            raise error_from_response(status, payload, reason)
        if raw:
            return payload
        return orjson.loads(payload) if payload else {}

    def _write_params(self) -> dict[str, str]:
        return {"fieldManager": self._field_manager} if self._field_manager else {}

    # -- reads ------------------------------------------------------------------------------

    async def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> dict[str, Any]:
        """Read one object live from the API server (not from any cache)."""
        result: dict[str, Any] = await self._request("GET", resource.path(namespace, name))
        return result

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> dict[str, Any]:
        """One list request; returns the raw list JSON (``items``, ``metadata.resourceVersion``,
        ``metadata.continue``). Paging is the caller's: pass back ``metadata.continue``."""
        params = _list_params(label_selector, field_selector, limit, continue_, resource_version)
        if resource_version_match:
            params["resourceVersionMatch"] = resource_version_match
        result: dict[str, Any] = await self._request("GET", resource.path(namespace), params=params)
        return result

    async def list_raw(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        idle_timeout: float | None = 60.0,
    ) -> RawList | LazyList:
        """Like ``list``, but the items stay undecoded JSON slices of the response body.

        No total timeout: an unpaged list (the server ignores ``limit`` at resourceVersion "0")
        of a large resource may take longer than any fixed bound, and a reflector whose list
        always times out never syncs. A read that stalls for ``idle_timeout`` seconds still
        fails.

        A list at resourceVersion "0" is answered from the watch cache and ignores ``limit``, so
        an informer's first list can be tens of MB. Decoding it whole makes every object a dict
        at once (about 5x the JSON), and Python keeps that heap after the dicts are freed; the
        reflector decodes one item at a time instead."""
        params = _list_params(label_selector, field_selector, limit, continue_, resource_version)
        payload = await self._request(
            "GET",
            resource.path(namespace),
            params=params,
            raw=True,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self._timeout.total, sock_read=idle_timeout
            ),
        )
        return decode_list(payload)

    # -- writes -----------------------------------------------------------------------------

    async def create(
        self, resource: Resource, obj: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """POST a new object; ``AlreadyExists`` if the name is taken."""
        ns = _namespace_of(obj, namespace)
        result: dict[str, Any] = await self._request(
            "POST", resource.path(ns), params=self._write_params(), body=obj
        )
        return result

    async def update(
        self,
        resource: Resource,
        obj: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT the whole object. With ``metadata.resourceVersion`` set this is an optimistic lock:
        the server answers ``Conflict`` if the object changed since that version."""
        ns = _namespace_of(obj, namespace)
        result: dict[str, Any] = await self._request(
            "PUT",
            resource.path(ns, _name_of(obj), subresource),
            params=self._write_params(),
            body=obj,
        )
        return result

    async def update_status(
        self, resource: Resource, obj: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """PUT to the status subresource (only ``status`` changes; optimistic lock as update)."""
        return await self.update(resource, obj, namespace, subresource="status")

    async def patch_merge(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386). Put ``metadata.resourceVersion`` in the patch for a lock."""
        result: dict[str, Any] = await self._request(
            "PATCH",
            resource.path(namespace, name, subresource),
            params=self._write_params(),
            body=patch,
            content_type=_MERGE_PATCH,
        )
        return result

    async def patch_json(
        self,
        resource: Resource,
        name: str,
        operations: Sequence[Mapping[str, Any]],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON patch (RFC 6902). A failing ``test`` operation makes the server reject the whole
        patch (422 ``Invalid``), which is how a patch is made conditional on what it read."""
        result: dict[str, Any] = await self._request(
            "PATCH",
            resource.path(namespace, name, subresource),
            params=self._write_params(),
            body=operations,
            content_type=_JSON_PATCH,
        )
        return result

    async def patch_status(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch of the status subresource."""
        return await self.patch_merge(resource, name, patch, namespace, subresource="status")

    async def delete(
        self,
        resource: Resource,
        name: str,
        namespace: str | None = None,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> dict[str, Any]:
        """DELETE, with optional preconditions: the server answers ``Conflict`` if the object's
        uid or resourceVersion differ. Returns the server's answer (the object while finalizers
        hold it, else a Status)."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        preconditions: dict[str, str] = {}
        if uid:
            preconditions["uid"] = uid
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        if preconditions:
            options["preconditions"] = preconditions
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        result: dict[str, Any] = await self._request(
            "DELETE", resource.path(namespace, name), body=options
        )
        return result

    # -- watch ------------------------------------------------------------------------------

    async def watch(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
        idle_timeout: float | None = WATCH_IDLE_TIMEOUT,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Stream ``(type, object)`` events: ADDED, MODIFIED, DELETED, BOOKMARK.

        Ends when the server closes the stream (``timeout_seconds``). An ``ERROR`` event raises
        its typed error. Close the iterator (``contextlib.aclosing``) when stopping early.

        ``idle_timeout``: a stream that delivers no byte for that long is treated as dead
        (``aiohttp.ServerTimeoutError``, a ``TimeoutError``). With bookmarks the server writes
        about once a minute even when nothing changes, so the default of 90 s notices a
        connection that died silently (a NAT or load balancer dropping it) within 90 s instead
        of when the server-side timeout would have ended it, 5 to 10 minutes later.
        """
        params: dict[str, str] = {"watch": "true"}
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        headers = await self._headers(None)
        # No total timeout: the stream is long-lived by design. The read timeout is per read:
        # it fires only when nothing at all arrived for that long.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout.total, sock_read=idle_timeout
        )
        try:
            resp = await self._session.request(
                "GET",
                self._base + resource.path(namespace),
                params=params,
                headers=headers,
                timeout=timeout,
                **self._request_kwargs(),
            )
        except Exception:
            self._count("<error>", "GET")
            raise
        async with resp:
            self._count(str(resp.status), "GET")
            if resp.status != 200:
                raise error_from_response(resp.status, await resp.read(), resp.reason or "")
            buf = bytearray()
            async for chunk in resp.content.iter_any():
                # Search only the new bytes for the end of a line: a 1 MB event arrives in many
                # chunks, and rescanning the buffer each time would be quadratic.
                search_from = len(buf)
                buf += chunk
                start = 0
                while (nl := buf.find(b"\n", search_from)) >= 0:
                    line = bytes(buf[start:nl])
                    start = search_from = nl + 1
                    if line.strip():
                        yield _parse_event(line)
                del buf[:start]
            if bytes(buf).strip():
                # The server ends every event with a newline: a partial one means the connection
                # broke mid-event. Report it as the transport failure it is.
                raise aiohttp.ClientPayloadError("watch stream ended in the middle of an event")


def _parse_event(line: bytes) -> tuple[str, dict[str, Any]]:
    event = orjson.loads(line)
    etype = event.get("type")
    obj = event.get("object")
    if not isinstance(etype, str) or not isinstance(obj, dict):
        raise ApiError(500, "BadWatchEvent", f"malformed watch event: {line[:200]!r}")
    if etype == "ERROR":
        raise error_from_status(obj)
    return etype, obj
