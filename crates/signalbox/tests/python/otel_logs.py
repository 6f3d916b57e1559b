"""Exports log records with the OpenTelemetry Python SDK's OTLP/HTTP log exporter (protobuf)
to Signalbox. Usage: otel_logs.py ENDPOINT COUNT"""
import logging
import sys

from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

endpoint, count = sys.argv[1], int(sys.argv[2])
resource = Resource.create({"service.name": "inventory", "service.instance.id": "inv-1", "host.name": "node-9"})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint + "/v1/logs")))
set_logger_provider(provider)
trace.set_tracer_provider(TracerProvider(resource=resource))
tracer = trace.get_tracer("inventory")
logger = logging.getLogger("inventory")
logger.addHandler(LoggingHandler(logger_provider=provider))
logger.setLevel(logging.INFO)
with tracer.start_as_current_span("reserve") as span:
    trace_id = format(span.get_span_context().trace_id, "032x")
    for i in range(count):
        logger.warning("stock low for sku-%d", i, extra={"sku": "sku-%d" % i})
provider.shutdown()
print(trace_id)
