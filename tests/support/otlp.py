"""An OTLP/HTTP trace receiver on loopback: decodes what exporters really send; and a
tracer provider that exports to it."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Sampler

from tests.support.loopback import HOST, threaded


@dataclass
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[str]
    status_code: int


@dataclass
class Receiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # names of the metrics received
    lock: threading.Lock = field(default_factory=threading.Lock)

    def named(self, name: str) -> list[ReceivedSpan]:
        with self.lock:
            return [s for s in self.spans if s.name == name]

    def wait_for(self, name: str, count: int, seconds: float = 10) -> list[ReceivedSpan]:
        deadline = time.monotonic() + seconds
        while len(self.named(name)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.named(name)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@contextmanager
def receiver(port: int = 0) -> Iterator[tuple[str, Receiver]]:
    """Yields the receiver's base URL (exporters post to /v1/traces) and what it got."""
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path.endswith("/v1/metrics"):
                metrics = ExportMetricsServiceRequest.FromString(body)
                with got.lock:
                    got.metrics += [
                        metric.name
                        for resource in metrics.resource_metrics
                        for scope in resource.scope_metrics
                        for metric in scope.metrics
                    ]
                self._answer(ExportMetricsServiceResponse().SerializeToString())
                return
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                service = next(
                    (
                        _value(a.value)
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        with got.lock:
                            got.spans.append(
                                ReceivedSpan(
                                    service=service,
                                    name=span.name,
                                    trace_id=span.trace_id.hex(),
                                    span_id=span.span_id.hex(),
                                    parent_span_id=span.parent_span_id.hex(),
                                    kind=span.kind,
                                    attributes={a.key: _value(a.value) for a in span.attributes},
                                    events=[e.name for e in span.events],
                                    status_code=span.status.code,
                                )
                            )
            self._answer(ExportTraceServiceResponse().SerializeToString())

        def _answer(self, answer: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    with threaded(Handler, port) as bound:
        yield f"http://{HOST}:{bound}", got


@contextmanager
def exported(sampler: Sampler | None = None) -> Iterator[tuple[TracerProvider, Receiver]]:
    """A tracer provider exporting each span as it ends to a real OTLP receiver, and
    what the receiver got."""
    with receiver() as (url, got):
        tracer_provider = TracerProvider(sampler=sampler)
        tracer_provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(f"{url}/v1/traces"))
        )
        yield tracer_provider, got
        tracer_provider.shutdown()
