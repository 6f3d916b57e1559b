#!/usr/bin/env bash
# Figures of the scale-out deployment (docs/benchmarks.md, "Cluster"): ingest throughput of
# one node against three with the NATS buffer, the buffer's added latency, failover times and
# etcd's write load per registered instance, on a loopback cluster of 3 etcd members and 3
# NATS servers (bench/cluster.py). About 6 minutes.
#
# Usage: bench/cluster.sh [signalbox-binary] [signalbox-loadgen-binary]
#   default: the release builds (cargo build --release -p signalbox -p signalbox-loadgen),
#   PROFILE=debug for the debug ones. ONLY=throughput,latency,failover,load picks figures;
#   INGEST_SECONDS, LATENCY_REQUESTS, LOAD_INSTANCES, LOAD_SECONDS, TTL_REPORT_EVERY tune them.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CARGO_TARGET_DIR:-$PWD/target}/${PROFILE:-release}"
bin="${1:-$dir/signalbox}"
lg="${2:-$dir/signalbox-loadgen}"
if [ $# -eq 0 ] && [ "${PROFILE:-release}" = release ]; then
  cargo build --release -p signalbox -p signalbox-loadgen >&2
fi
export PATH="$PATH:/usr/sbin"
exec timeout -s TERM -k 15 1800 python3 bench/cluster.py "$bin" "$lg"
