#!/usr/bin/env bash
# The ingest buffer's cost (issue 15): one node's log ingest throughput and per-request
# latency with `[ingest] buffer` on a local NATS JetStream server (R1, file storage) against
# the same node writing its store directly, in the same run, same client, same data.
#
# Two `signalbox serve` nodes on temp data dirs (one direct, one buffered through a
# `nats-server -js` started here); a Python client (stdlib only, keep-alive connections)
# POSTs NDJSON batches of LINES lines to /api/logs from CLIENTS threads for SECONDS seconds
# against each in turn (direct first, then buffered, then direct again to show drift).
# Printed: requests/s, lines/s, p50/p99 request latency; the buffered node's p50/p99
# minus the direct node's is the added latency (a publish to JetStream and its PubAck,
# instead of the store's own fsync'd write-ahead log). After the buffered run the script
# waits until the consumers have stored every acknowledged line and prints how long that took.
#
# Usage: bench/ingest-buffer.sh
# Env: SIGNALBOX_BIN (default: a release build), SECONDS_PER_RUN (10), CLIENTS (4), LINES (200).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-4}
LINES=${LINES:-200}
WORK=$(mktemp -d)
cleanup() {
  local pids; pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null
  sleep 0.5
  [ -n "$(jobs -pr)" ] && kill -9 $(jobs -pr) 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { echo "needs nats-server (apt-get install nats-server)" >&2; exit 1; }
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
if [ -z "${SIGNALBOX_BIN:-}" ]; then
  cargo build --release -p signalbox >&2
fi
SB_BIN=${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

NP=$(port)
"$NATS" -a 127.0.0.1 -p "$NP" -js -sd "$WORK/js" -l "$WORK/nats.log" >/dev/null 2>&1 &
start_node() { # name, extra env...; sets ADDR
  local name=$1; shift
  local c g
  c=$(port); g=$(port)
  env "$@" "$SB_BIN" serve --data-dir "$WORK/$name" --listen "127.0.0.1:$g" --console-listen "127.0.0.1:$c" \
    --consul-listen "127.0.0.1:$(port)" --otlp-grpc-listen "127.0.0.1:$(port)" --otlp-http-listen "127.0.0.1:$(port)" \
    --zipkin-listen "127.0.0.1:$(port)" >/dev/null 2>"$WORK/$name.log" &
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$c/readyz" >/dev/null && break
    sleep 0.1
  done
  ADDR="127.0.0.1:$c"
}
start_node direct; DIRECT=$ADDR
start_node buffered SIGNALBOX_INGEST__BUFFER="nats://127.0.0.1:$NP"; BUFFERED=$ADDR
# The stream is created a moment after start.
sleep 2

run() { # label, console address, service
  python3 - "$1" "$2" "$3" "$SECONDS_PER_RUN" "$CLIENTS" "$LINES" <<'EOF'
import http.client, json, sys, threading, time
label, addr, svc, secs, clients, lines = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
host, port = addr.split(":")
lat, errors, sent = [], [0], [0]
lock = threading.Lock()
def worker(k):
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    i = 0
    end = time.monotonic() + secs
    while time.monotonic() < end:
        body = "".join(json.dumps({"body": f"req {k}-{i} line {j} status=200 path=/api/orders/{j % 97}", "service": svc, "instance": f"pod-{j % 8}", "level": "info"}) + "\n" for j in range(lines))
        t = time.monotonic()
        c.request("POST", "/api/logs", body, {"content-type": "application/x-ndjson"})
        r = c.getresponse(); r.read()
        d = time.monotonic() - t
        with lock:
            if r.status == 200:
                lat.append(d); sent[0] += lines
            else:
                errors[0] += 1
        i += 1
ts = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
t0 = time.monotonic()
[t.start() for t in ts]; [t.join() for t in ts]
el = time.monotonic() - t0
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
print(f"{label:9s} {len(lat)/el:8.0f} req/s {sent[0]/el:9.0f} lines/s  p50 {p(0.5):6.2f} ms  p99 {p(0.99):6.2f} ms  errors {errors[0]}  lines {sent[0]}")
EOF
}
echo "# ${CLIENTS} clients, ${LINES} lines per request, ${SECONDS_PER_RUN}s per run; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
run direct "$DIRECT" bench-direct
OUT=$(run buffered "$BUFFERED" bench-buffered); echo "$OUT"
WANT=$(echo "$OUT" | sed -E 's/.*lines ([0-9]+)$/\1/')
t0=$(date +%s.%N)
for _ in $(seq 600); do
  got=$(curl -s "http://$BUFFERED/api/logs/aggregate?query=service%3Abench-buffered%20%7C%20count%20by%20service&since=1h&step=1m" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total",0))')
  [ "$got" = "$WANT" ] && break
  sleep 0.1
done
echo "buffered: ${got}/${WANT} acknowledged lines stored $(python3 -c "import time; print(f'{time.time()-$t0:.1f}')") s after the last acknowledgement"
run direct "$DIRECT" bench-direct2
