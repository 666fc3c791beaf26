"""Tracing is exported only when the standard OTEL_* variables ask for it."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.trace import NoOpTracerProvider

from dynamo_snapshot.runtime import tracing


def test_no_endpoint_means_no_op() -> None:
    assert not tracing.exporting({})
    assert isinstance(tracing.tracer_provider_from_env("svc", {}), NoOpTracerProvider)


def test_endpoint_configures_otlp() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert tracing.exporting(env)
    assert tracing.exporting({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"})
    provider = tracing.tracer_provider_from_env("svc", env)
    assert isinstance(provider, SDKTracerProvider)
    try:
        assert provider.resource.attributes["service.name"] == "svc"
    finally:
        provider.shutdown()


def test_explicitly_disabled() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert not tracing.exporting({**base, "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.exporting({**base, "OTEL_SDK_DISABLED": "true"})
