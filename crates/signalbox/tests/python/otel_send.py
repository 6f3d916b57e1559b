"""Sends one trace to Signalbox with the OpenTelemetry Python SDK over OTLP/HTTP (protobuf,
gzip), the way an instrumented Python service does, and prints its trace id and the trace
and span ids its child span links to.

Usage: python3 otel_send.py http://HOST:PORT   (the OTLP/HTTP receiver)
Needs: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
"""

import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def main() -> None:
    endpoint = sys.argv[1].rstrip("/") + "/v1/traces"
    resource = Resource.create({"service.name": "py-checkout", "deployment.environment": "test"})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("signalbox-compat-test")

    # A span of another trace (a message that was enqueued earlier), which the child links to.
    with tracer.start_as_current_span("enqueue order", context=Context(), kind=SpanKind.PRODUCER) as enqueued:
        linked = enqueued.get_span_context()
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.request.method", "POST")
        root.set_attribute("order.items", 3)
        link = Link(linked, {"link.reason": "consumes"})
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT, links=[link]) as child:
            child.set_attribute("peer.service", "payments")
            child.add_event("card declined", {"attempt": 1})
            child.set_status(Status(StatusCode.ERROR, "declined"))
        trace_id = format(root.get_span_context().trace_id, "032x")

    if not provider.force_flush(timeout_millis=10_000):
        sys.exit("flush timed out")
    provider.shutdown()
    print(trace_id, format(linked.trace_id, "032x"), format(linked.span_id, "016x"))


if __name__ == "__main__":
    main()
