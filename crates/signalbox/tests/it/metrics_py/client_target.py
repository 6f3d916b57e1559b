"""A scrape target built with prometheus_client: serves /metrics on the port in argv[1]
and prints "ready" once it listens; runs until killed."""
import sys
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

requests = Counter("app_requests", "Requests handled.", ["method"])
temperature = Gauge("app_temperature_celsius", "Room temperature.")
latency = Histogram("app_latency_seconds", "Latency.", buckets=(0.1, 0.5, 1.0))

requests.labels("GET").inc(41)
requests.labels("POST").inc(1)
temperature.set(21.5)
for v in (0.05, 0.2, 0.7, 3.0):
    latency.observe(v)
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
print("ready", flush=True)
while True:
    time.sleep(1)
