"""Typed API errors.

The Kubernetes API answers a failed request with a ``Status`` object (``kind: Status``) carrying an
HTTP code, a machine-readable ``reason`` and a human message. This module turns that answer into
one exception class per reason a caller acts on, so code reads ``except Conflict:`` rather than
comparing status codes:

=================  ====  ===============================================================
class              code  typical cause
=================  ====  ===============================================================
``NotFound``       404   the object (or its namespace / resource) does not exist
``AlreadyExists``  409   create of a name that is taken (reason ``AlreadyExists``)
``Conflict``       409   stale ``resourceVersion`` or a failed delete precondition
``Invalid``        422   the object failed validation
``Forbidden``      403   RBAC denies the verb
``Gone``           410   the requested resourceVersion has been compacted ("too old")
=================  ====  ===============================================================

Anything else is a plain :class:`ApiError`. Transport failures (connection refused, TLS, timeouts)
are not ``ApiError``: they surface as ``OSError`` / ``aiohttp.ClientError`` / ``TimeoutError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "NotFound",
    "error_from_response",
    "error_from_status",
]


class ApiError(Exception):
    """A request the API server answered with a non-2xx status.

    ``status`` is the HTTP code, ``reason`` the Status reason (``NotFound``, ``Conflict``, ...),
    ``message`` the server's explanation, ``details`` the Status ``details`` (name, kind, causes).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details: Mapping[str, Any] = details or {}


class NotFound(ApiError):
    """404: the object does not exist."""


class AlreadyExists(ApiError):
    """409 with reason AlreadyExists: create of an existing name."""


class Conflict(ApiError):
    """409: optimistic-lock failure (stale resourceVersion) or a delete precondition mismatch."""


class Invalid(ApiError):
    """422: the object failed validation; ``details['causes']`` lists the fields."""


class Forbidden(ApiError):
    """403: the caller's RBAC does not allow this verb on this resource."""


class Gone(ApiError):
    """410: the resourceVersion asked for is older than what the server still keeps."""


_BY_REASON: dict[str, type[ApiError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Invalid": Invalid,
    "Forbidden": Forbidden,
    "Gone": Gone,
    # A watch or list from a compacted resourceVersion answers reason "Expired" with code 410.
    "Expired": Gone,
}

_BY_CODE: dict[int, type[ApiError]] = {
    404: NotFound,
    409: Conflict,
    422: Invalid,
    403: Forbidden,
    410: Gone,
}


def error_from_status(status: Mapping[str, Any], http_status: int | None = None) -> ApiError:
    """The typed error for a ``Status`` object (from a response body or a watch ERROR event)."""
    code = int(status.get("code") or http_status or 0)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")
    details = status.get("details")
    # The reason decides first (409 means AlreadyExists or Conflict); the code is the fallback for
    # answers whose reason is empty or unknown.
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or ApiError
    return cls(
        code, reason or "Unknown", message, details if isinstance(details, Mapping) else None
    )


def error_from_response(http_status: int, body: bytes, http_reason: str = "") -> ApiError:
    """Build the typed error for a failed HTTP response, whether or not its body is a Status."""
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status":
        return error_from_status(parsed, http_status)
    text = body.decode("utf-8", "replace").strip()
    return error_from_status(
        {"code": http_status, "reason": http_reason, "message": text[:2000]}, http_status
    )
