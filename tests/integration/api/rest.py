"""Raw REST calls through kubernetes_asyncio's ApiClient, for tests that need the plain answer:
the HTTP status (201, 403, 404, 422, ...) and the JSON body, with no model deserialisation.

The impersonating clients of the `impersonate` fixture set their headers as default headers,
which `call_api` sends with every request, so the same helper serves admin and impersonation.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio.client import ApiClient, ApiException

MERGE_PATCH = "application/merge-patch+json"


async def call(
    api: ApiClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """Send one request; return (status, decoded JSON body). Never raises for HTTP errors."""
    try:
        data, status, _ = await api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=False,
        )
    except ApiException as err:
        try:
            decoded = json.loads(err.body) if err.body else None
        except ValueError:
            decoded = err.body
        return int(err.status), decoded
    return int(status), data


def group_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """Path of a nvidia.com/v1alpha1 resource (collection, or one object)."""
    base = "/apis/nvidia.com/v1alpha1"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


def message(body: Any) -> str:
    """The `message` of a Status body (what kubectl prints for a rejection)."""
    if isinstance(body, dict):
        return str(body.get("message", body))
    return str(body)
