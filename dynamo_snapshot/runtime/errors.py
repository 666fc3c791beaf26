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
``BadRequest``     400   a malformed request (bad selector, bad patch)
``Unauthorized``   401   no or expired credentials (token rotated, certificate expired)
``TooManyRequests``429   API Priority and Fairness or a rate limit: retry after ``retry_after``
``InternalError``  500   the server failed (an admission webhook, etcd)
``ServerTimeout``  500   the server gave up on the operation (reason ``ServerTimeout``)
``ServiceUnavailable`` 503  the server is not ready
``Timeout``        504   the request timed out in the server (reason ``Timeout``)
=================  ====  ===============================================================

``retryable(err)`` says whether trying the same request again later may succeed (429, 500, 503,
504 and the server timeouts).

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
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "InternalError",
    "Invalid",
    "NotFound",
    "ServerTimeout",
    "ServiceUnavailable",
    "Timeout",
    "TooManyRequests",
    "Unauthorized",
    "error_from_response",
    "error_from_status",
    "retryable",
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


class BadRequest(ApiError):
    """400: the request itself is malformed."""


class Unauthorized(ApiError):
    """401: the credentials are missing, wrong or expired."""


class TooManyRequests(ApiError):
    """429: throttled; ``retry_after`` is the server's suggested wait in seconds (or None)."""

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retryAfterSeconds")
        return float(value) if isinstance(value, int | float) and value > 0 else None


class InternalError(ApiError):
    """500: the server failed to handle a valid request."""


class ServerTimeout(ApiError):
    """500 with reason ServerTimeout: the server could not finish the operation in time."""


class ServiceUnavailable(ApiError):
    """503: the server (or an aggregated API) is not available right now."""


class Timeout(ApiError):
    """504 with reason Timeout: the request did not complete in the server's time limit."""


def retryable(err: BaseException) -> bool:
    """True for server answers that say "try again later"."""
    return isinstance(
        err, TooManyRequests | InternalError | ServerTimeout | ServiceUnavailable | Timeout
    )


_BY_REASON: dict[str, type[ApiError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Invalid": Invalid,
    "Forbidden": Forbidden,
    "Gone": Gone,
    # A watch or list from a compacted resourceVersion answers reason "Expired" with code 410.
    "Expired": Gone,
    "BadRequest": BadRequest,
    "Unauthorized": Unauthorized,
    "TooManyRequests": TooManyRequests,
    "InternalError": InternalError,
    "ServerTimeout": ServerTimeout,
    "ServiceUnavailable": ServiceUnavailable,
    "Timeout": Timeout,
}

_BY_CODE: dict[int, type[ApiError]] = {
    404: NotFound,
    409: Conflict,
    422: Invalid,
    403: Forbidden,
    410: Gone,
    400: BadRequest,
    401: Unauthorized,
    429: TooManyRequests,
    500: InternalError,
    503: ServiceUnavailable,
    504: Timeout,
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
