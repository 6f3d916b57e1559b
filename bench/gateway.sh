#!/usr/bin/env bash
# Gateway benchmark. Everything shares this machine: the load generator, the upstream and
# the proxy under test, so CPU per request limits throughput and ratios from one run are
# what to compare.
#
# HTTP/1.1: wrk (2 threads, 64 connections) against
#   direct                        the upstream: nginx (1 worker) returning a fixed 20-byte body
#   nginx                         nginx (2 workers) as a keep-alive reverse proxy
#   haproxy                       HAProxy (2 threads), keep-alive to the upstream, http-reuse always
#   signalbox-telemetry-off       spans, metrics and access log off
#   signalbox-telemetry-on        every request: server + client span stored in the node's own
#                                 trace store, RED metrics, JSON access log to a file
#   signalbox-spans-sampled-10pct metrics and access log for every request, spans for 10% of
#                                 traces (head sampling on the trace id)
# HTTP/2 (h2c, prior knowledge; h2load 2 threads, 64 connections, 10 streams each) against
#   direct-h2, nginx-h2, haproxy-h2, signalbox-h2-telemetry-off, signalbox-h2-telemetry-on;
#   every proxy speaks HTTP/1.1 to the upstream.
# Per run: requests per second, p50/p99 (HTTP/1), and the proxy's CPU per request
#   (utime+stime of its processes from /proc/PID/stat over the run ÷ requests served).
# Idle connections: RSS of each proxy (all its processes) before and after opening
#   IDLE_CONNS keep-alive connections that each served one request, per connection.
#
# Usage: bench/gateway.sh [duration, default 15s] [rounds, default 3]
# Env:   IDLE_CONNS (default 10000, or 9000 under a 20,000 descriptor limit; 0 skips),
#        H2=0 skips HTTP/2,
#        SIGNALBOX_VARIANTS: extra Signalbox targets (telemetry off), separated by `;`, each
#        `name|port|toml-lines|env`: toml-lines (`\n`-separated) go into `[gateway]`, env is
#        space-separated VAR=value pairs for the process; e.g. for an HTTP/1 mode switch:
#        SIGNALBOX_VARIANTS='signalbox-h1-hyper|18089|http1 = "hyper"|' runs hyper's HTTP/1
#        server beside the default fast path (`[gateway] http1`).
#        SIGNALBOX_BIN: the binary under test (default target/release/signalbox).
#        SIGNALBOX_BASELINE: another signalbox binary (e.g. a build of an earlier commit), run as
#        baseline-telemetry-on and baseline-telemetry-off in the same rounds, for A/B figures.
# Targets run in turn, ROUNDS times (interleaved), and the medians are reported.
# Needs: nginx, haproxy, wrk, h2load (Debian nginx haproxy wrk nghttp2-client), python3, and a
#   release build (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
ROUNDS=${2:-3}
H2=${H2:-1}
OUT=bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1   # let the nodes finish writing before their data directories go
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx haproxy wrk python3; do
  command -v $tool >/dev/null || { echo "$tool not installed (see scripts/test-deps.sh)"; exit 1; }
done
[ "$H2" = 1 ] && { command -v h2load >/dev/null || { echo "h2load not installed (apt-get install -y nghttp2-client)"; exit 1; }; }
SIGNALBOX_BIN=${SIGNALBOX_BIN:-target/release/signalbox}
[ -x "$SIGNALBOX_BIN" ] || cargo build --release -p signalbox
# Idle connections need a descriptor each in the proxy and in the client. HAProxy refuses to
# start unless its limit covers two per connection (maxconn), so the default count is 10,000
# only where the hard limit allows 2 × 10,000 plus some; otherwise (this machine's hard limit
# is 20,000 and raising it needs CAP_SYS_RESOURCE) it is 9,000.
ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
if [ "$FD_LIMIT" -ge 20200 ]; then IDLE_DEFAULT=10000; else IDLE_DEFAULT=9000; fi
IDLE_CONNS=${IDLE_CONNS:-$IDLE_DEFAULT}
HAPROXY_MAXCONN=$(( (FD_LIMIT - 100) / 2 ))
# Signalbox shares descriptors out too: two per gateway connection, each API port's cap
# ([connections], 64 here), 1,024 kept free (crates/signalbox/src/listeners.rs).
SIGNALBOX_MAXCONN=$(( (FD_LIMIT - 1024 - 64 * 8) / 2 ))

UP=127.0.0.1:18081; NGX=127.0.0.1:18082; HAP=127.0.0.1:18086
UP_H2=127.0.0.1:18091; NGX_H2=127.0.0.1:18092; HAP_H2=127.0.0.1:18096

nginx_conf() { # $1 = name, $2 = server block, $3 = workers
  cat > "$WORK/$1.conf" <<NGINX
worker_processes $3;
worker_rlimit_nofile $FD_LIMIT;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/$1-body; proxy_temp_path $WORK/$1-proxy;
  fastcgi_temp_path $WORK/$1-fcgi; uwsgi_temp_path $WORK/$1-uwsgi; scgi_temp_path $WORK/$1-scgi;
  $2
}
NGINX
}
nginx_conf up "server { listen $UP; listen $UP_H2 http2; location / { default_type text/plain; return 200 'hello from upstream\n'; } }" 1
# nginx 1.22 serves h2c (prior knowledge) on a plain `listen ... http2` socket.
nginx_conf px "upstream backend { server $UP; keepalive 128; }
  server { listen $NGX; listen $NGX_H2 http2;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" 2
nginx -c "$WORK/up.conf"
nginx -c "$WORK/px.conf"

# HAProxy as nginx is set up: 2 threads (nginx has 2 workers), keep-alive to the upstream
# with idle connections shared by every client (`http-reuse always`), no logging.
cat > "$WORK/haproxy.cfg" <<HAPROXY
global
  nbthread 2
  maxconn $HAPROXY_MAXCONN
  pidfile $WORK/haproxy.pid
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend h1
  bind $HAP
  default_backend upstream
frontend h2
  bind $HAP_H2 proto h2
  default_backend upstream
backend upstream
  server up1 $UP
HAPROXY
haproxy -D -f "$WORK/haproxy.cfg"

# A Signalbox node: $1 name, $2 gateway port, $3 port offset for its other listeners,
# $4 lines for [gateway.telemetry], $5 extra lines for [gateway], $6 the binary.
signalbox_start() {
  local name=$1 port=$2 off=$3 telemetry=$4 gateway_extra=${5:-} bin=${6:-$SIGNALBOX_BIN} vars=${7:-}
  cat > "$WORK/$name.toml" <<TOML
[console]
listen = "127.0.0.1:$((19900 + off))"
[consul]
listen = "127.0.0.1:$((18500 + off))"
[otlp]
grpc_listen = "127.0.0.1:$((14300 + off))"
http_listen = "127.0.0.1:$((14400 + off))"
[zipkin]
listen = "127.0.0.1:$((19400 + off))"
[gateway]
listen = "127.0.0.1:$port"
$(printf '%b' "$gateway_extra")
[connections]
max_connections = 64
[gateway.limits]
max_connections = $SIGNALBOX_MAXCONN
max_connections_per_ip = 0
header_read_timeout = "300s"
[gateway.telemetry]
$telemetry
[[gateway.services]]
name = "upstream"
endpoints = ["$UP"]
[[gateway.routes]]
service = "upstream"
[gateway.routes.match]
path_prefix = "/"
TOML
  # shellcheck disable=SC2086 # vars is a list of VAR=value words
  env $vars RUST_LOG=warn "$bin" serve -c "$WORK/$name.toml" --data-dir "$WORK/$name-data" \
    >/dev/null 2>"$WORK/$name.err" &
  PIDS+=($!)
  echo $! > "$WORK/$name.sbpid"
}
ON='access_log = "'$WORK'/access-on.log"'
SAMPLED='access_log = "'$WORK'/access-sampled.log"
sample_rate = 0.1'
OFF='spans = false
metrics = false
access_log = "off"'
signalbox_start signalbox-telemetry-on 18083 1 "$ON"
signalbox_start signalbox-telemetry-off 18084 2 "$OFF"
signalbox_start signalbox-spans-sampled-10pct 18085 3 "$SAMPLED"
H1_TARGETS=(direct nginx haproxy signalbox-telemetry-off signalbox-telemetry-on signalbox-spans-sampled-10pct)
declare -A URL=([direct]="http://$UP/" [nginx]="http://$NGX/" [haproxy]="http://$HAP/"
  [signalbox-telemetry-on]="http://127.0.0.1:18083/" [signalbox-telemetry-off]="http://127.0.0.1:18084/"
  [signalbox-spans-sampled-10pct]="http://127.0.0.1:18085/")
if [ -n "${SIGNALBOX_BASELINE:-}" ]; then
  signalbox_start baseline-telemetry-on 18087 4 "${ON/access-on/access-baseline}" "" "$SIGNALBOX_BASELINE"
  signalbox_start baseline-telemetry-off 18088 5 "$OFF" "" "$SIGNALBOX_BASELINE"
  H1_TARGETS+=(baseline-telemetry-off baseline-telemetry-on)
  URL[baseline-telemetry-on]="http://127.0.0.1:18087/"; URL[baseline-telemetry-off]="http://127.0.0.1:18088/"
fi
# Extra Signalbox variants (SIGNALBOX_VARIANTS), telemetry off, each on its own port.
off=10
IFS=';' read -r -a variants <<< "${SIGNALBOX_VARIANTS:-}"
for v in "${variants[@]}"; do
  [ -n "$v" ] || continue
  IFS='|' read -r vname vport vtoml venv <<< "$v"
  signalbox_start "$vname" "$vport" $off "$OFF" "$vtoml" "" "$venv"
  H1_TARGETS+=("$vname"); URL[$vname]="http://127.0.0.1:$vport/"; off=$((off + 1))
done
sleep 1

# The processes whose CPU and memory count for each target.
pids_of() {
  case $1 in
    direct*) pgrep -P "$(cat "$WORK/up.pid")" | tr '\n' ' '; cat "$WORK/up.pid" ;;
    nginx*) pgrep -P "$(cat "$WORK/px.pid")" | tr '\n' ' '; cat "$WORK/px.pid" ;;
    haproxy*) cat "$WORK/haproxy.pid" ;;
    signalbox-h2-telemetry-on) cat "$WORK/signalbox-telemetry-on.sbpid" ;;
    signalbox-h2-telemetry-off) cat "$WORK/signalbox-telemetry-off.sbpid" ;;
    *) cat "$WORK/$1.sbpid" ;;
  esac
}
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
rss_kib() { local t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
TICK=$(getconf CLK_TCK)

run_h1() { # $1 target
  local label=$1 url=${URL[$1]} pids; pids=$(pids_of "$1")
  curl -sf "$url" >/dev/null || { echo "$label: $url does not answer"; exit 1; }
  wrk -t2 -c64 -d2s "$url" >/dev/null   # warm-up: connections, pools, caches
  local before; before=$(cpu_ticks $pids)
  wrk -t2 -c64 -d"$DURATION" --latency "$url" > "$WORK/$label.wrk"
  local after; after=$(cpu_ticks $pids)
  local rps p50 p99 reqs
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$label.wrk")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$label.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$label.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$label.wrk")
  local cpu; cpu=$(python3 -c "print(f'{($after-$before)*1e6/$TICK/$reqs:.1f}')")
  echo "h1|$label|$rps|$p50|$p99|$cpu" >> "$WORK/results"
  echo "$label: $rps req/s, p50 $p50, p99 $p99, proxy CPU ${cpu} µs/req" >&2
}

H2_TARGETS=(direct-h2 nginx-h2 haproxy-h2 signalbox-h2-telemetry-off signalbox-h2-telemetry-on)
declare -A H2URL=([direct-h2]="http://$UP_H2/" [nginx-h2]="http://$NGX_H2/" [haproxy-h2]="http://$HAP_H2/"
  [signalbox-h2-telemetry-off]="http://127.0.0.1:18084/" [signalbox-h2-telemetry-on]="http://127.0.0.1:18083/")
run_h2() { # $1 target
  local label=$1 url=${H2URL[$1]} pids; pids=$(pids_of "$1")
  h2load -t2 -c64 -m10 -D 2 "$url" >/dev/null
  local before; before=$(cpu_ticks $pids)
  h2load -t2 -c64 -m10 -D "${DURATION%s}" "$url" > "$WORK/$label.h2load"
  local after; after=$(cpu_ticks $pids)
  local rps reqs ok mean
  rps=$(awk '/^finished in/ {print $4}' "$WORK/$label.h2load")
  reqs=$(awk '/^requests:/ {print $2}' "$WORK/$label.h2load")
  ok=$(awk '/^status codes:/ {print $3}' "$WORK/$label.h2load")
  mean=$(awk '/^time for request:/ && $4 ~ /[0-9]/ {print $6}' "$WORK/$label.h2load")
  [ "$ok" -gt 0 ] || { echo "$label: no 2xx answers"; cat "$WORK/$label.h2load"; exit 1; }
  local cpu; cpu=$(python3 -c "print(f'{($after-$before)*1e6/$TICK/$reqs:.1f}')")
  echo "h2|$label|$rps|$mean|$mean|$cpu" >> "$WORK/results"
  echo "$label: $rps req/s, mean $mean, proxy CPU ${cpu} µs/req ($ok of $reqs 2xx)" >&2
}

: > "$WORK/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  for t in "${H1_TARGETS[@]}"; do run_h1 "$t"; done
  if [ "$H2" = 1 ]; then for t in "${H2_TARGETS[@]}"; do run_h2 "$t"; done; fi
done

# Idle keep-alive connections: each sends one request, reads the answer, then stays open.
idle_rss() { # $1 target, $2 host:port
  local pids; pids=$(pids_of "$1")
  local before; before=$(rss_kib $pids)
  python3 - "$2" "$IDLE_CONNS" "$WORK/idle-$1.ready" <<'PY' &
import socket, sys, time, os
host, port = sys.argv[1].split(":"); n = int(sys.argv[2])
conns = []
req = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
for i in range(n):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(req)
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"upstream\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"connection {i} closed")
        got += chunk
    conns.append(s)
open(sys.argv[3], "w").close()
time.sleep(60)
PY
  local opener=$!
  for _ in $(seq 600); do [ -f "$WORK/idle-$1.ready" ] && break; kill -0 $opener 2>/dev/null || break; sleep 0.2; done
  if [ ! -f "$WORK/idle-$1.ready" ]; then
    echo "$1: could not open $IDLE_CONNS connections" >&2
    kill $opener 2>/dev/null || true
    echo "idle|$1|-|-" >> "$WORK/results"
    return 0
  fi
  sleep 2
  local after; after=$(rss_kib $pids)
  kill $opener 2>/dev/null || true; wait $opener 2>/dev/null || true
  echo "idle|$1|$before|$after" >> "$WORK/results"
  echo "$1: RSS $before KiB -> $after KiB with $IDLE_CONNS idle connections" >&2
  sleep 3   # let the proxy see the closes before the next target
}
if [ "$IDLE_CONNS" -gt 0 ]; then
  idle_rss nginx "$NGX"
  idle_rss haproxy "$HAP"
  idle_rss signalbox-telemetry-off 127.0.0.1:18084
  idle_rss signalbox-telemetry-on 127.0.0.1:18083
fi

python3 - "$WORK/results" "$DURATION" "$ROUNDS" "$IDLE_CONNS" <<'PY' | tee "$OUT/gateway-$(date -u +%Y%m%dT%H%M%SZ).md"
import sys, statistics
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
runs = {"h1": {}, "h2": {}}
idle = {}
for r in rows:
    if r[0] == "idle":
        idle[r[1]] = (r[2], r[3])
        continue
    runs[r[0]].setdefault(r[1], []).append(dict(rps=float(r[2]), p50=ms(r[3]), p99=ms(r[4]), cpu=float(r[5])))
med = lambda runs: {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50", "p99", "cpu")} for k, v in runs.items()}
h1 = med(runs["h1"])
if h1:
    print(f"HTTP/1.1: wrk -t2 -c64 -d{sys.argv[2]}, medians of {sys.argv[3]} interleaved rounds; fixed 20-byte body from an nginx upstream; all on one shared 2-core machine\n")
    print("| target | req/s | × nginx | p50 ms | p99 ms | added p99 vs direct ms | proxy CPU µs/req | CPU × nginx |")
    print("|---|---|---|---|---|---|---|---|")
    ngx, direct = h1["nginx"], h1["direct"]
    for k, d in h1.items():
        cpu = "-" if k == "direct" else f"{d['cpu']:.1f}"
        cpux = "-" if k == "direct" else f"{d['cpu']/ngx['cpu']:.2f}"
        print(f"| {k} | {d['rps']:.0f} | {d['rps']/ngx['rps']:.2f} | {d['p50']:.3f} | {d['p99']:.3f} | {d['p99']-direct['p99']:.3f} | {cpu} | {cpux} |")
    print("\nper-round req/s: " + "; ".join(k + " " + ", ".join(f"{x['rps']:.0f}" for x in v) for k, v in runs["h1"].items()))
    for pre in ("signalbox", "baseline"):
        on, off = h1.get(f"{pre}-telemetry-on"), h1.get(f"{pre}-telemetry-off")
        if on and off:
            print(f"\n{pre}: telemetry on costs {on['cpu'] - off['cpu']:.1f} µs of proxy CPU per request over off (medians)")
if runs["h2"]:
    h2 = med(runs["h2"])
    n2 = h2["nginx-h2"]
    print(f"\nHTTP/2 (h2c prior knowledge, HTTP/1.1 to the upstream): h2load -t2 -c64 -m10 -D {sys.argv[2]}, medians\n")
    print("| target | req/s | × nginx | mean request ms | proxy CPU µs/req | CPU × nginx |")
    print("|---|---|---|---|---|---|")
    for k, d in h2.items():
        cpu = "-" if k == "direct-h2" else f"{d['cpu']:.1f}"
        cpux = "-" if k == "direct-h2" else f"{d['cpu']/n2['cpu']:.2f}"
        print(f"| {k} | {d['rps']:.0f} | {d['rps']/n2['rps']:.2f} | {d['p50']:.3f} | {cpu} | {cpux} |")
    print("\nper-round req/s: " + "; ".join(k + " " + ", ".join(f"{x['rps']:.0f}" for x in v) for k, v in runs["h2"].items()))
if idle:
    n = int(sys.argv[4])
    print(f"\nRSS with {n} idle keep-alive HTTP/1.1 connections (each served one request), all processes of the proxy\n")
    print("| proxy | RSS before MiB | RSS after MiB | KiB per idle connection | × nginx |")
    print("|---|---|---|---|---|")
    per = {k: (int(a) - int(b)) / n for k, (b, a) in idle.items() if b != "-"}
    for k, (b, a) in idle.items():
        if b == "-":
            print(f"| {k} | - | - | could not open {n} connections | - |")
            continue
        x = f"{per[k]/per['nginx']:.2f}" if per.get("nginx") else "-"
        print(f"| {k} | {int(b)/1024:.1f} | {int(a)/1024:.1f} | {per[k]:.2f} | {x} |")
PY
