#!/usr/bin/env bash
# Host metrics: `signalbox agent` (host_metrics enabled, every node_exporter-equivalent
# collector plus the agent's own process series) against Prometheus's node_exporter
# (Debian's prometheus-node-exporter, restricted to the same collectors) in the same run,
# on the same machine (issue 14).
#
# For each interval (default: 15 s and 1 s) both run side by side for DURATION seconds:
# the agent collects on its own every interval (and, with PUSH=1, pushes each collection to
# a `signalbox serve` through its disk buffer: remote_write encoding and an fsync per
# collection); node_exporter collects when scraped, so the script scrapes it every interval
# the way a Prometheus would (the curl's own CPU is not counted). Reported per process: CPU
# (utime + stime from /proc/PID/stat over the window) per collection, RSS at the end and
# its peak (VmRSS, VmHWM). Also, from the agent's own signalbox_agent_host_collect_seconds,
# the mean wall time of one collection; and, side by side, an idle agent (host metrics on,
# one collection an hour) whose CPU over the window is the agent's fixed cost (runtime
# timers, the buffer's pollers), so the agent's cost per collection beyond it is shown too.
#
# Usage: bench/host-metrics.sh [duration per interval in s, default 180] [intervals, default "15 1"]
# Env: SIGNALBOX_BIN (default target/release/signalbox, built if missing), PUSH (1: push to
# a local node; 0: the agent only serves /metrics), NODE_EXPORTER_BIN.
set -euo pipefail

DURATION="${1:-180}"
INTERVALS="${2:-15 1}"
PUSH="${PUSH:-1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SIGNALBOX_BIN:-$root/target/release/signalbox}"
NE="${NODE_EXPORTER_BIN:-$(command -v prometheus-node-exporter || command -v node_exporter)}"
if [ ! -x "$BIN" ]; then
  (cd "$root" && cargo build --release -p signalbox)
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() {
  # Fields after the parenthesised command: utime is the 12th, stime the 13th.
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
collectors="cpu stat loadavg meminfo pressure filesystem diskstats netdev netstat sockstat tcpstat filefd time timex uname vmstat"

node_url=none
if [ "$PUSH" = 1 ]; then
  np=$(free_port)
  "$BIN" serve --listen "127.0.0.1:$(free_port)" --console-listen "127.0.0.1:$np" \
    --consul-listen "127.0.0.1:$(free_port)" --otlp-grpc-listen "127.0.0.1:$(free_port)" \
    --otlp-http-listen "127.0.0.1:$(free_port)" --zipkin-listen "127.0.0.1:$(free_port)" \
    --data-dir "$work/node" >"$work/node.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$np/readyz" >/dev/null && break; sleep 0.2; done
  node_url="http://127.0.0.1:$np/prometheus/api/v1/write"
fi

# The idle agent, for the whole run.
ip=$(free_port)
cat >"$work/idle.toml" <<EOF
data_dir = "$work/idle"
metrics_listen = "127.0.0.1:$ip"
progress_interval = "0s"
[output]
endpoint = "http://127.0.0.1:1"
[host_metrics]
enabled = true
interval = "1h"
collectors = ["uname"]
remote_write_url = "none"
EOF
"$BIN" agent -q -c "$work/idle.toml" >"$work/idle.log" 2>&1 &
idle=$!; pids+=($idle)

echo "| interval | collections | agent CPU ms/collection | of which beyond the idle agent | node_exporter CPU ms/collection | agent collection wall ms | agent RSS MiB (peak) | node_exporter RSS MiB (peak) | idle agent RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
for interval in $INTERVALS; do
  ap=$(free_port); nep=$(free_port)
  list=$(printf '"%s", ' $collectors)
  cat >"$work/agent-$interval.toml" <<EOF
data_dir = "$work/agent-$interval"
metrics_listen = "127.0.0.1:$ap"
progress_interval = "0s"
[output]
endpoint = "http://127.0.0.1:1"
[host_metrics]
enabled = true
interval = "${interval}s"
collectors = [${list%, }, "process"]
remote_write_url = "$node_url"
EOF
  "$BIN" agent -q -c "$work/agent-$interval.toml" >"$work/agent-$interval.log" 2>&1 &
  agent=$!; pids+=($agent)
  args=(--web.listen-address="127.0.0.1:$nep" --collector.disable-defaults)
  for c in $collectors; do args+=("--collector.$c"); done
  "$NE" "${args[@]}" >"$work/ne-$interval.log" 2>&1 &
  ne=$!; pids+=($ne)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$nep/metrics" >/dev/null && curl -sf "http://127.0.0.1:$ap/metrics" >/dev/null && break; sleep 0.1; done
  # Warm-up: one collection each, then the window starts.
  curl -sf "http://127.0.0.1:$nep/metrics" >/dev/null
  sleep "$interval"
  a0=$(cpu_ticks $agent); n0=$(cpu_ticks $ne); i0=$(cpu_ticks $idle)
  c0=$(curl -sf "http://127.0.0.1:$ap/metrics" | awk '/^signalbox_agent_host_collect_seconds_count/ { print $2 }')
  w0=$(curl -sf "http://127.0.0.1:$ap/metrics" | awk '/^signalbox_agent_host_collect_seconds_sum/ { print $2 }')
  end=$(( $(date +%s) + DURATION ))
  scrapes=0
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -sf "http://127.0.0.1:$nep/metrics" >/dev/null
    scrapes=$((scrapes + 1))
    sleep "$interval"
  done
  a1=$(cpu_ticks $agent); n1=$(cpu_ticks $ne); i1=$(cpu_ticks $idle)
  c1=$(curl -sf "http://127.0.0.1:$ap/metrics" | awk '/^signalbox_agent_host_collect_seconds_count/ { print $2 }')
  w1=$(curl -sf "http://127.0.0.1:$ap/metrics" | awk '/^signalbox_agent_host_collect_seconds_sum/ { print $2 }')
  collections=$(( ${c1%.*} - ${c0%.*} ))
  awk -v i="$interval" -v c="$collections" -v s="$scrapes" -v a="$((a1 - a0))" -v n="$((n1 - n0))" -v idle="$((i1 - i0))" -v hz="$hz" \
      -v w0="$w0" -v w1="$w1" -v ar="$(rss_kb $agent)" -v ah="$(hwm_kb $agent)" -v nr="$(rss_kb $ne)" -v nh="$(hwm_kb $ne)" \
      -v ir="$(rss_kb $idle)" 'BEGIN {
    cc = c > 0 ? c : 1
    printf "| %s s | %d agent / %d node_exporter | %.2f | %.2f | %.2f | %.2f | %.1f (%.1f) | %.1f (%.1f) | %.1f |\n",
      i, c, s, a * 1000 / hz / cc, (a - idle) * 1000 / hz / cc, n * 1000 / hz / (s > 0 ? s : 1),
      (w1 - w0) * 1000 / cc, ar / 1024, ah / 1024, nr / 1024, nh / 1024, ir / 1024
  }'
  if [ "$PUSH" = 1 ]; then
    curl -sf "http://127.0.0.1:$ap/metrics" | grep -E '^signalbox_agent_host_(snapshots|push)' | sed 's/^/    /' >&2
  fi
  kill "$agent" "$ne"; wait "$agent" "$ne" 2>/dev/null || true
done
