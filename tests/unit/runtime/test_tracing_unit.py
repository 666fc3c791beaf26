"""Tracing is exported only when the standard OTEL_* variables ask for it."""

from __future__ import annotations

import pytest
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


def test_the_otlp_protocol_variable_is_honoured() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    assert tracing._protocol({}) == "grpc"
    assert tracing._protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == "http/protobuf"
    both = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    assert tracing._protocol(both) == "http/protobuf"
    assert isinstance(tracing._exporter("http/protobuf"), Http)
    assert isinstance(tracing._exporter("grpc"), Grpc)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
    }
    with pytest.raises(ValueError, match="http/json"):
        tracing.tracer_provider_from_env("svc", env)


def test_install_global_makes_the_provider_process_wide() -> None:
    from opentelemetry import trace

    provider = SDKTracerProvider()
    try:
        tracing.install_global(provider)
        assert trace.get_tracer_provider() is provider
    finally:
        provider.shutdown()
