#!/usr/bin/env bash
# Installs what the tests drive when it is missing: dnsmasq (the real DNS server of the
# DNS-discovery tests), Chromium and Node.js (the console's browser test), curl, the
# OpenTelemetry Python SDK (a real Python exporter in the trace tests), and the Python
# clients of the control-plane and log tests (py-consul, python-consul2, config-client,
# python-logging-loki, elasticsearch-py, prometheus_client), Prometheus, promtool,
# node_exporter (the agent's host-metrics differential test), Alertmanager, nginx (the
# request-smuggling reference), etcd (the control plane's etcd backend), nats-server (the
# ingest buffer on JetStream, and the NATS cluster of scripts/cluster-test.sh), and the gateway
# benchmark's peer and load generators (HAProxy, wrk, h2load from nghttp2-client;
# bench/gateway.sh). System
# packages come from apt-get as root; otherwise the script names what to install and fails.
set -euo pipefail

# The OpenTelemetry Python SDK, from PyPI (pinned).
if ! python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
  echo "== installing the OpenTelemetry Python SDK"
  python3 -m pip install --quiet --disable-pip-version-check \
    opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2
fi

# Its Zipkin protobuf exporter pins protobuf 3, which the OTLP exporter's protobuf cannot
# share: it gets a virtualenv of its own, whose python the Zipkin test runs.
zipkin_venv="$HOME/.cache/signalbox/zipkin-venv"
if ! "$zipkin_venv/bin/python" -c 'import opentelemetry.exporter.zipkin.proto.http' 2>/dev/null; then
  echo "== installing the OpenTelemetry Python Zipkin protobuf exporter in $zipkin_venv"
  python3 -m venv "$zipkin_venv"
  "$zipkin_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    opentelemetry-sdk==1.45.1 opentelemetry-exporter-zipkin-proto-http==1.45.1
fi

# Python clients of the control-plane tests, from PyPI (pinned), one directory each under
# target/python (py-consul and python-consul2 both import as `consul`); the tests put the
# directory on PYTHONPATH (crates/testkit/src/python.rs).
root="$(cd "$(dirname "$0")/.." && pwd)"
for pkg in py-consul==1.8.0 python-consul2==0.1.5 config-client==1.5.0 python-logging-loki==0.3.1 elasticsearch==8.11.1 prometheus-client==0.21.1; do
  dir="$root/target/python/${pkg%%==*}"
  if [ ! -f "$dir/.installed-${pkg#*==}" ]; then
    echo "== installing $pkg into $dir"
    rm -rf "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --target "$dir" "$pkg"
    touch "$dir/.installed-${pkg#*==}"
  fi
done

missing=()
[ -x /usr/sbin/dnsmasq ] || [ -x /usr/bin/dnsmasq ] || missing+=(dnsmasq-base)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
command -v curl >/dev/null || missing+=(curl)
# rsyslog with its Elasticsearch output: a real shipper for the log tests.
[ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/omelasticsearch.so >/dev/null 2>&1 || missing+=(rsyslog-elasticsearch)
# Prometheus 2.42 and promtool (remote_write into Signalbox, the PromQL differential test,
# `promtool check metrics`) and Alertmanager (receiving Signalbox's alerts).
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || missing+=(prometheus)
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
# nginx: the reference proxy of the request-smuggling conformance test.
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
# The ingest buffer's tests and scripts/cluster-test.sh: NATS with JetStream (Debian's 2.9).
[ -x /usr/sbin/nats-server ] || missing+=(nats-server)
# bench/gateway.sh: HAProxy (the other proxy), wrk (HTTP/1.1 load), h2load (HTTP/2 load).
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "the tests need: ${missing[*]} (as root: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
