"""Tracing: an OpenTelemetry tracer for the framework, exporting only when configured.

Every reconcile runs inside a span (``reconcile``) carrying the controller name, the object key and
the result; code inside the reconcile can add child spans through the same tracer. Whether spans
leave the process is decided by the standard OpenTelemetry environment variables:

* ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set → spans are
  batched and exported over OTLP, by gRPC or, with ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or
  ``..._TRACES_PROTOCOL``) ``http/protobuf``, by HTTP; another protocol is a ``ValueError`` at
  start-up rather than silently ignored. The exporter reads the rest of the
  ``OTEL_EXPORTER_OTLP_*`` variables itself: headers, TLS, timeout;
* ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true`` → off;
* otherwise a no-op tracer: spans cost almost nothing and go nowhere.

``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the service as usual. The provider is
owned by whoever calls :func:`tracer_provider_from_env` (the manager); it becomes the
process-global provider only when asked (:func:`install_global`, or the manager option
``global_tracer_provider``), so that gRPC and aiohttp instrumentations report through it;
:func:`shutdown` flushes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import anyio
from opentelemetry.trace import NoOpTracerProvider, Tracer, TracerProvider

__all__ = [
    "SPAN_RECONCILE",
    "exporting",
    "install_global",
    "shutdown",
    "tracer",
    "tracer_provider_from_env",
]

SPAN_RECONCILE = "reconcile"
INSTRUMENTATION = "dynamo_snapshot.runtime"


def exporting(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for OTLP export of traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def install_global(provider: TracerProvider) -> None:
    """Make ``provider`` the process-global tracer provider, so that instrumentations which use
    the global one (gRPC, aiohttp) report through it. OpenTelemetry allows this once per
    process: a second call is ignored with a warning."""
    from opentelemetry import trace

    trace.set_tracer_provider(provider)


def tracer_provider_from_env(
    service_name: str, env: Mapping[str, str] | None = None
) -> TracerProvider:
    """An SDK provider with an OTLP/gRPC batch exporter when configured, else a no-op one."""
    if not exporting(env):
        return NoOpTracerProvider()
    source = os.environ if env is None else env
    exporter = _exporter(_protocol(source))
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over our default.
    attrs = {} if source.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = SDKTracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


PROTOCOLS = ("grpc", "http/protobuf")


def _protocol(env: Mapping[str, str]) -> str:
    """The OTLP transport the environment asks for (the traces-specific variable wins)."""
    value = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    protocol = value.strip().lower()
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={value!r} is not supported; use one of {PROTOCOLS}"
        )
    return protocol


def _exporter(protocol: str) -> Any:
    # Imported here so a process that does not export never loads gRPC or the HTTP exporter.
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HTTPSpanExporter,
        )

        return HTTPSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def tracer(provider: TracerProvider) -> Tracer:
    return provider.get_tracer(INSTRUMENTATION)


async def shutdown(provider: TracerProvider) -> None:
    """Flush and stop an SDK provider (in a thread: the exporter's flush blocks)."""
    stop = getattr(provider, "shutdown", None)
    if callable(stop) and not isinstance(provider, NoOpTracerProvider):
        await anyio.to_thread.run_sync(stop)
