"""Typed errors built from the API server's Status answers, and Resource paths."""

from __future__ import annotations

import orjson
import pytest

from dynamo_snapshot.runtime.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    InternalError,
    Invalid,
    NotFound,
    ServerTimeout,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
    Unauthorized,
    error_from_response,
    error_from_status,
    retryable,
)
from dynamo_snapshot.runtime.resource import CONFIGMAPS, JOBS, LEASES, NODES, PODS, Resource


def status(code: int, reason: str, message: str = "m") -> bytes:
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
            "details": {"name": "x", "kind": "pods"},
        }
    )


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (422, "Invalid", Invalid),
        (403, "Forbidden", Forbidden),
        (410, "Gone", Gone),
        (410, "Expired", Gone),
        (500, "InternalError", InternalError),
        (500, "ServerTimeout", ServerTimeout),
        (504, "Timeout", Timeout),
        (429, "TooManyRequests", TooManyRequests),
        (401, "Unauthorized", Unauthorized),
        (400, "BadRequest", BadRequest),
        (503, "ServiceUnavailable", ServiceUnavailable),
        (418, "Teapot", ApiError),
    ],
)
def test_status_maps_to_its_error_class(code: int, reason: str, cls: type[ApiError]) -> None:
    err = error_from_response(code, status(code, reason, "why"))
    assert type(err) is cls
    assert err.status == code
    assert err.reason == reason
    assert err.message == "why"
    assert err.details["name"] == "x"
    assert str(err) == f"{code} {reason}: why"


def test_code_decides_when_the_reason_is_unknown() -> None:
    assert type(error_from_status({"code": 409, "reason": "Weird"})) is Conflict
    assert type(error_from_status({"code": 404})) is NotFound
    assert type(error_from_status({}, 418)) is ApiError


def test_non_status_bodies_still_give_typed_errors() -> None:
    err = error_from_response(404, b"404 page not found\n", "Not Found")
    assert isinstance(err, NotFound)
    assert err.message == "404 page not found"
    assert isinstance(error_from_response(503, b"", "Service Unavailable"), ServiceUnavailable)
    # Bare answers from a proxy or a throttled server carry no Status: the code decides.
    assert type(error_from_response(429, b"", "Too Many Requests")) is TooManyRequests
    assert type(error_from_response(401, b"Unauthorized", "Unauthorized")) is Unauthorized
    assert type(error_from_response(504, b"", "Gateway Timeout")) is Timeout


def test_retry_after_and_retryable() -> None:
    throttled = error_from_status(
        {"code": 429, "reason": "TooManyRequests", "details": {"retryAfterSeconds": 3}}
    )
    assert isinstance(throttled, TooManyRequests)
    assert throttled.retry_after == 3.0
    assert retryable(throttled)
    assert retryable(error_from_status({"code": 500, "reason": "InternalError"}))
    assert retryable(error_from_status({"code": 504, "reason": "Timeout"}))
    assert not retryable(error_from_status({"code": 409, "reason": "Conflict"}))
    assert not retryable(error_from_status({"code": 401, "reason": "Unauthorized"}))


def test_all_typed_errors_are_api_errors() -> None:
    for cls in (NotFound, AlreadyExists, Conflict, Invalid, Forbidden, Gone):
        assert issubclass(cls, ApiError)


def test_resource_paths() -> None:
    assert PODS.path() == "/api/v1/pods"
    assert PODS.path("ns") == "/api/v1/namespaces/ns/pods"
    assert PODS.path("ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert PODS.path("ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    assert JOBS.path("ns", "j") == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert NODES.path("ignored", "n1") == "/api/v1/nodes/n1"
    assert LEASES.api_version == "coordination.k8s.io/v1"
    assert CONFIGMAPS.api_version == "v1"
    assert str(JOBS) == "jobs.batch"
    assert str(PODS) == "pods"
    crd = Resource("nvidia.com", "v1alpha1", "podsnapshots", "PodSnapshot")
    assert crd.path("a b", "x/y") == "/apis/nvidia.com/v1alpha1/namespaces/a%20b/podsnapshots/x%2Fy"


def test_resource_path_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a namespace"):
        PODS.path(None, "p")
    with pytest.raises(ValueError, match="subresource"):
        PODS.path("ns", None, "status")
    with pytest.raises(ValueError, match="empty name"):
        PODS.path("ns", "")
