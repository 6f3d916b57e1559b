"""Exports metrics with the OpenTelemetry Python SDK over OTLP/HTTP to the URL in argv[1]:
a counter (delta temporality, exported twice), an up-down counter, a histogram, and a
gauge, from a resource naming the service, its namespace and instance."""
import sys

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

url = sys.argv[1]
exporter = OTLPMetricExporter(
    endpoint=url,
    preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.CUMULATIVE},
)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
resource = Resource.create(
    {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "pod-7", "host.name": "node-3"}
)
provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = provider.get_meter("orders", "1.0")
orders = meter.create_counter("orders.placed", unit="{order}", description="Orders placed.")
inflight = meter.create_up_down_counter("orders.inflight", unit="{order}")
latency = meter.create_histogram("http.server.duration", unit="s", description="Request latency.")
meter.create_observable_gauge("queue.depth", callbacks=[lambda options: [Observation(7, {"queue": "emails"})]])

orders.add(3, {"payment.method": "card"})
inflight.add(5)
for v in (0.004, 0.02, 0.3, 1.5):
    latency.record(v, {"http.route": "/pay"})
assert provider.force_flush(10_000), "first flush failed"
orders.add(4, {"payment.method": "card"})
inflight.add(-2)
assert provider.force_flush(10_000), "second flush failed"
provider.shutdown()
print("exported")
