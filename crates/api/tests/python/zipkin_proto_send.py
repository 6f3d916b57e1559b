"""Sends one trace to Signalbox with the OpenTelemetry Python SDK's Zipkin protobuf exporter
(`application/x-protobuf`, zipkin.proto3 ListOfSpans), the way an instrumented Python
service reporting to Zipkin does, and prints its trace id.

Usage: python zipkin_proto_send.py http://HOST:PORT/zipkin/api/v2/spans
Needs: opentelemetry-exporter-zipkin-proto-http, whose protobuf 3 pin conflicts with the
OTLP exporter's, so scripts/test-deps.sh installs it in its own virtualenv.
"""

import sys

from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode


def main() -> None:
    # The spans are collected, then exported as one batch by the real exporter, whose result
    # (and any exception) decides the script's exit status.
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "py-zipkin"}))
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("signalbox-zipkin-test")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.method", "GET")
        with tracer.start_as_current_span("load cart", kind=SpanKind.CLIENT) as child:
            child.set_attribute("db.system", "redis")
            child.add_event("cache miss")
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    exporter = ZipkinExporter(endpoint=sys.argv[1], local_node_ipv4="10.0.0.5", local_node_port=8080, timeout=10)
    if exporter.export(finished.get_finished_spans()) != SpanExportResult.SUCCESS:
        sys.exit("Signalbox refused the Zipkin protobuf export")
    print(trace_id)


if __name__ == "__main__":
    main()
