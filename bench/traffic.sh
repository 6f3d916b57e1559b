#!/usr/bin/env bash
# Traffic-split benchmark: the gateway's CPU per request on a plain route, on a route split
# 90/10 over two versions, and on a route mirroring 10% of requests to a second version
# (the copies are extra upstream requests the gateway makes, counted in its CPU). One
# Signalbox node serves all three routes; wrk (2 threads, 64 connections) drives each in
# turn, ROUNDS times, and the medians are reported (the machine is shared and noisy).
# The upstreams are two nginx servers returning a fixed small body.
# Usage: bench/traffic.sh [duration, default 15s] [rounds, default 3]
# Needs: nginx and wrk (Debian packages), curl, a release build (built here if missing;
# SIGNALBOX_BIN picks another binary).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
ROUNDS=${2:-3}
OUT=bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; for n in up1 up2; do [ -f "$WORK/$n.pid" ] && kill "$(cat "$WORK/$n.pid")" 2>/dev/null; done; rm -rf "$WORK"' EXIT

command -v nginx >/dev/null || { echo "nginx not installed (apt-get install -y nginx)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install -y wrk)"; exit 1; }
SIGNALBOX_BIN=${SIGNALBOX_BIN:-target/release/signalbox}
[ -x "$SIGNALBOX_BIN" ] || cargo build --release -p signalbox

UP1=127.0.0.1:18181; UP2=127.0.0.1:18182; GW=127.0.0.1:18183; CONSOLE=127.0.0.1:19921

upstream() { # $1 name, $2 address
  cat > "$WORK/$1.conf" <<NGINX
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/$1-body; proxy_temp_path $WORK/$1-proxy;
  fastcgi_temp_path $WORK/$1-fcgi; uwsgi_temp_path $WORK/$1-uwsgi; scgi_temp_path $WORK/$1-scgi;
  server { listen $2; location / { default_type text/plain; return 200 'hello from $1\n'; } }
}
NGINX
  nginx -c "$WORK/$1.conf"
}
upstream up1 "$UP1"
upstream up2 "$UP2"

cat > "$WORK/node.toml" <<TOML
[console]
listen = "$CONSOLE"
[consul]
listen = "127.0.0.1:18521"
[otlp]
grpc_listen = "127.0.0.1:14417"
http_listen = "127.0.0.1:14418"
[zipkin]
listen = "127.0.0.1:19431"
[gateway]
listen = "$GW"
[gateway.telemetry]
access_log = "$WORK/access.log"
[[gateway.services]]
name = "plain"
endpoints = ["$UP1"]
[[gateway.services]]
name = "split"
versions = { v1 = ["$UP1"], v2 = ["$UP2"] }
[[gateway.services]]
name = "mirror"
versions = { v1 = ["$UP1"], v2 = ["$UP2"] }
[[gateway.routes]]
service = "plain"
[gateway.routes.match]
path_prefix = "/plain"
[[gateway.routes]]
service = "split"
[gateway.routes.match]
path_prefix = "/split"
[[gateway.routes]]
service = "mirror"
[gateway.routes.match]
path_prefix = "/mirror"
TOML
RUST_LOG=warn "$SIGNALBOX_BIN" serve -c "$WORK/node.toml" --data-dir "$WORK/data" >/dev/null 2>"$WORK/node.err" & NODE=$!
for _ in $(seq 100); do curl -sf "http://$CONSOLE/readyz" >/dev/null && break; sleep 0.1; done
policy() { # $1 service, $2 JSON document
  curl -sf -X PUT -H 'content-type: application/json' "http://$CONSOLE/api/config/gateway/traffic/$1" \
    --data "$(python3 -c 'import json,sys; print(json.dumps({"value": sys.argv[1]}))' "$2")" >/dev/null
}
policy split '{"weights": {"v1": 90, "v2": 10}}'
policy mirror '{"weights": {"v1": 100}, "mirror": {"version": "v2", "percent": 10}}'
sleep 1

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # $1 label, $2 path
  local label=$1 url="http://$GW$2"
  curl -sf "$url" >/dev/null || { echo "$label: $url does not answer"; exit 1; }
  wrk -t2 -c64 -d2s "$url" >/dev/null
  local before; before=$(cpu_ticks $NODE)
  wrk -t2 -c64 -d"$DURATION" --latency "$url" > "$WORK/$label.wrk"
  local after; after=$(cpu_ticks $NODE)
  local rps reqs p99 us
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$label.wrk")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$label.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$label.wrk")
  us=$(python3 -c "print(f'{($after-$before)*10000/$reqs:.1f}')")
  echo "$label|$rps|$p99|$us" >> "$WORK/results"
  echo "$label: $rps req/s, p99 $p99, node CPU $us µs/req" >&2
}

: > "$WORK/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  run plain /plain
  run split-90-10 /split
  run mirror-10pct /mirror
done
MIRRORED=$(curl -sf "http://$CONSOLE/metrics" | awk '/^signalbox_gateway_mirror_sent_total/ {print $2}')

python3 - "$WORK/results" "$DURATION" "$ROUNDS" "${MIRRORED:-0}" <<'PY' | tee "$OUT/traffic-$(date -u +%Y%m%dT%H%M%SZ).md"
import sys, statistics
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
runs = {}
for r in rows:
    runs.setdefault(r[0], []).append(dict(rps=float(r[1]), p99=ms(r[2]), cpu=float(r[3])))
data = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p99", "cpu")} for k, v in runs.items()}
plain = data["plain"]
print(f"wrk -t2 -c64 -d{sys.argv[2]}, medians of {sys.argv[3]} interleaved rounds; nginx upstreams; one 2-core machine; {sys.argv[4]} mirror copies sent in all\n")
print("| route | req/s | p99 ms | node CPU µs/req | vs plain |")
print("|---|---|---|---|---|")
for k in ["plain", "split-90-10", "mirror-10pct"]:
    d = data[k]
    print(f"| {k} | {d['rps']:.0f} | {d['p99']:.3f} | {d['cpu']:.1f} | {d['cpu'] - plain['cpu']:+.1f} |")
PY
