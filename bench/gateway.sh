#!/usr/bin/env bash
# Gateway benchmark: wrk (2 threads, 64 connections, 15 s) against
#   (a) the upstream directly, (b) Signalbox with full telemetry (every span stored in its
#   trace store), (c) Signalbox with telemetry off, (d) nginx as an equivalent keep-alive
#   reverse proxy, and (e) Signalbox with metrics and access log for every request but
#   spans for 10% of traces (head sampling), a common production setting.
# The upstream is nginx returning a fixed small body. Everything shares this machine.
# Usage: bench/gateway.sh [duration, default 15s] [rounds, default 3]
# The four targets run in turn, ROUNDS times, and the medians are reported: the machine is
# shared and noisy, and interleaving spreads the noise over all targets alike.
# Needs: nginx and wrk (Debian packages), a release build (built here if missing).
# GATEWAY_HTTP1=fast|hyper picks the gateway's HTTP/1 front end (`[gateway] http1`, default
# fast) for every Signalbox target; run the script once with each to compare them.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
ROUNDS=${2:-3}
OUT=bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$WORK/up.pid" ] && kill "$(cat "$WORK/up.pid")" 2>/dev/null; [ -f "$WORK/px.pid" ] && kill "$(cat "$WORK/px.pid")" 2>/dev/null; rm -rf "$WORK"' EXIT

command -v nginx >/dev/null || { echo "nginx not installed (apt-get install -y nginx)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed (apt-get install -y wrk)"; exit 1; }
[ -x target/release/signalbox ] || cargo build --release -p signalbox

GATEWAY_HTTP1=${GATEWAY_HTTP1:-fast}
UP=127.0.0.1:18081; NGX=127.0.0.1:18082; SB_ON=127.0.0.1:18083; SB_OFF=127.0.0.1:18084

nginx_conf() { # $1 = name, $2 = server block, $3 = workers
  cat > "$WORK/$1.conf" <<NGINX
worker_processes $3;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/$1-body; proxy_temp_path $WORK/$1-proxy;
  fastcgi_temp_path $WORK/$1-fcgi; uwsgi_temp_path $WORK/$1-uwsgi; scgi_temp_path $WORK/$1-scgi;
  $2
}
NGINX
}
nginx_conf up "server { listen $UP; location / { default_type text/plain; return 200 'hello from upstream\n'; } }" 1
nginx_conf px "upstream backend { server $UP; keepalive 128; }
  server { listen $NGX; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" 2
nginx -c "$WORK/up.conf"
nginx -c "$WORK/px.conf"

# Every listener on its own port: the two Signalbox nodes run side by side.
cat > "$WORK/on.toml" <<TOML
[console]
listen = "127.0.0.1:19901"
[consul]
listen = "127.0.0.1:18501"
[otlp]
grpc_listen = "127.0.0.1:14317"
http_listen = "127.0.0.1:14318"
[zipkin]
listen = "127.0.0.1:19411"
[gateway]
listen = "$SB_ON"
http1 = "$GATEWAY_HTTP1"
[gateway.telemetry]
access_log = "$WORK/access.log"
[[gateway.services]]
name = "upstream"
endpoints = ["$UP"]
[[gateway.routes]]
service = "upstream"
[gateway.routes.match]
path_prefix = "/"
TOML
sed -e "s/19901/19902/" -e "s/18501/18502/" -e "s/14317/14327/" -e "s/14318/14328/" -e "s/19411/19412/" -e "s/$SB_ON/$SB_OFF/" "$WORK/on.toml" > "$WORK/off.toml"
cat >> "$WORK/off.toml" <<TOML
[gateway.telemetry]
spans = false
metrics = false
access_log = "off"
TOML
# The second [gateway.telemetry] table above would be a TOML error; build off.toml properly.
python3 - "$WORK/off.toml" <<'PY'
import sys, re
p = sys.argv[1]; s = open(p).read()
first = s.index("[gateway.telemetry]"); end = s.index("[[gateway.services]]")
s = s[:first] + s[end:]
open(p, "w").write(s)
PY
SB_SAMPLED=127.0.0.1:18085
sed -e "s/19901/19903/" -e "s/18501/18503/" -e "s/14317/14337/" -e "s/14318/14338/" -e "s/19411/19413/" -e "s/$SB_ON/$SB_SAMPLED/" \
  -e "s|/access\\.log|/access-sampled.log|" -e "s|^access_log = .*|&\nsample_rate = 0.1|" "$WORK/on.toml" > "$WORK/sampled.toml"
RUST_LOG=warn target/release/signalbox serve -c "$WORK/on.toml" --data-dir "$WORK/d1" >/dev/null 2>"$WORK/on.err" & SB_ON_PID=$!
RUST_LOG=warn target/release/signalbox serve -c "$WORK/sampled.toml" --data-dir "$WORK/d3" >/dev/null 2>"$WORK/sampled.err" & SB_SAMPLED_PID=$!
RUST_LOG=warn target/release/signalbox serve -c "$WORK/off.toml" --data-dir "$WORK/d2" >/dev/null 2>"$WORK/off.err" & SB_OFF_PID=$!
sleep 1

cpu_ticks() { # sum of utime+stime over pids
  local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
nginx_pids() { pgrep -f "nginx: worker process" -P "$(cat "$WORK/$1.pid")" | tr '\n' ' '; echo "$(cat "$WORK/$1.pid")"; }

run() { # $1 label, $2 url, $3.. pids whose CPU is counted
  local label=$1 url=$2; shift 2
  curl -sf "$url" >/dev/null || { echo "$label: $url does not answer"; exit 1; }
  wrk -t2 -c64 -d2s "$url" >/dev/null   # warm-up: connections, pools, caches
  local before; before=$(cpu_ticks "$@")
  wrk -t2 -c64 -d"$DURATION" --latency "$url" > "$WORK/$label.wrk"
  local after; after=$(cpu_ticks "$@")
  local rps p50 p99 reqs
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$label.wrk")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$label.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$label.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$label.wrk")
  local us_per_req; us_per_req=$(python3 -c "print(f'{($after-$before)*10000/$reqs:.1f}')")
  echo "$label|$rps|$p50|$p99|$us_per_req" >> "$WORK/results"
  echo "$label: $rps req/s, p50 $p50, p99 $p99, proxy CPU ${us_per_req} µs/req" >&2
}

: > "$WORK/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  run direct "http://$UP/" $(nginx_pids up)
  run signalbox-telemetry-on "http://$SB_ON/" $SB_ON_PID
  run signalbox-telemetry-off "http://$SB_OFF/" $SB_OFF_PID
  run nginx "http://$NGX/" $(nginx_pids px)
  run signalbox-spans-sampled-10pct "http://$SB_SAMPLED/" $SB_SAMPLED_PID
done

python3 - "$WORK/results" "$DURATION" "$ROUNDS" "$GATEWAY_HTTP1" <<'PY' | tee "$OUT/gateway-$(date -u +%Y%m%dT%H%M%SZ)-$GATEWAY_HTTP1.md"
import sys, statistics
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
runs = {}
for r in rows:
    runs.setdefault(r[0], []).append(dict(rps=float(r[1]), p50=ms(r[2]), p99=ms(r[3]), cpu=float(r[4])))
data = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50", "p99", "cpu")} for k, v in runs.items()}
ngx = data["nginx"]; direct = data["direct"]
print(f"wrk -t2 -c64 -d{sys.argv[2]}, medians of {sys.argv[3]} interleaved rounds; fixed 20-byte body from an nginx upstream; all on one 2-core machine; gateway http1 = {sys.argv[4]}\n")
print("| target | req/s | × nginx | p50 ms | p99 ms | added p99 vs direct ms | proxy CPU µs/req |")
print("|---|---|---|---|---|---|---|")
for k in ["direct", "signalbox-telemetry-on", "signalbox-telemetry-off", "nginx", "signalbox-spans-sampled-10pct"]:
    d = data[k]
    cpu = "-" if k == "direct" else f"{d['cpu']:.1f}"
    print(f"| {k} | {d['rps']:.0f} | {d['rps']/ngx['rps']:.2f} | {d['p50']:.3f} | {d['p99']:.3f} | {d['p99']-direct['p99']:.3f} | {cpu} |")
print("\nper-round req/s: " + "; ".join(k + " " + ", ".join(f"{x['rps']:.0f}" for x in v) for k, v in runs.items()))
PY
