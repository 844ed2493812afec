"""One call that sets up OpenTelemetry tracing to an OTLP endpoint.

Arguments win; what is not given comes from the standard environment variables
(OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL,
OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_*). Spans leave through a BatchSpanProcessor: a
bounded queue drained by a background thread, so a collector that is down or slow costs
the request path one enqueue (or one dropped span), never a wait.
"""

from __future__ import annotations

import math
import os
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

GRPC = "grpc"
HTTP = "http/protobuf"
PROTOCOLS = (GRPC, HTTP)
EXPORT_TIMEOUT_SECONDS = 5


class ConfigError(ValueError):
    """A setting (an argument or an OTEL_* variable) that cannot be used; says which."""


def configure(
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    sampling_ratio: float | None = None,
) -> TracerProvider:
    """A TracerProvider that exports spans over OTLP; with no endpoint anywhere, none."""
    env = os.environ.get
    name = service_name or env("OTEL_SERVICE_NAME") or "llm-slo-stack"
    raw, given = _setting(sampling_ratio, "sampling ratio", "OTEL_TRACES_SAMPLER_ARG", "1")
    try:
        ratio = float(raw) if raw is not None else math.nan
    except ValueError:
        ratio = math.nan
    if not 0 <= ratio <= 1:
        raise ConfigError(f"{given}: expected a number within 0..1, found {raw!r}")
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    target = (
        endpoint or env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if target:
        chosen, given = _setting(
            protocol, "OTLP protocol", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None
        )
        if chosen is None:
            chosen, given = _setting(None, "", "OTEL_EXPORTER_OTLP_PROTOCOL", HTTP)
        if chosen not in PROTOCOLS:
            raise ConfigError(f"{given}: expected one of {', '.join(PROTOCOLS)}, found {chosen!r}")
        provider.add_span_processor(BatchSpanProcessor(_exporter(target, str(chosen))))
    return provider


def meters(
    service_name: str | None = None, endpoint: str | None = None, protocol: str | None = None
) -> MeterProvider | None:
    """A MeterProvider that exports the GenAI client metrics over OTLP every
    OTEL_METRIC_EXPORT_INTERVAL ms (60 s by default); None with no endpoint anywhere."""
    env = os.environ.get
    target = (
        endpoint or env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or env("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    if not target:
        return None
    chosen, given = _setting(protocol, "OTLP protocol", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", None)
    if chosen is None:
        chosen, given = _setting(None, "", "OTEL_EXPORTER_OTLP_PROTOCOL", HTTP)
    if chosen not in PROTOCOLS:
        raise ConfigError(f"{given}: expected one of {', '.join(PROTOCOLS)}, found {chosen!r}")
    if chosen == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )

        parts = urlsplit(target if "://" in target else f"http://{target}")
        exporter: MetricExporter = GrpcMetrics(
            endpoint=parts.netloc, insecure=parts.scheme != "https", timeout=EXPORT_TIMEOUT_SECONDS
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetrics,
        )

        parts = urlsplit(target)
        url = target if parts.path not in ("", "/") else target.rstrip("/") + "/v1/metrics"
        exporter = HttpMetrics(endpoint=url, timeout=EXPORT_TIMEOUT_SECONDS)
    name = service_name or env("OTEL_SERVICE_NAME") or "llm-slo-stack"
    return MeterProvider(
        resource=Resource.create({SERVICE_NAME: name}),
        metric_readers=[PeriodicExportingMetricReader(exporter)],
    )


def _setting(
    argument: str | float | None, name: str, variable: str, default: str | None
) -> tuple[str | float | None, str]:
    """A setting and what to call it in an error: the argument (by `name`), else the
    environment variable, else the default (by the variable)."""
    if argument is not None:
        return argument, name
    return os.environ.get(variable, default), variable


def _exporter(endpoint: str, protocol: str) -> SpanExporter:
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        return Grpc(
            endpoint=parts.netloc, insecure=parts.scheme != "https", timeout=EXPORT_TIMEOUT_SECONDS
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    parts = urlsplit(endpoint)
    url = endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"
    return Http(endpoint=url, timeout=EXPORT_TIMEOUT_SECONDS)
