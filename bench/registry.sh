#!/usr/bin/env bash
# Registry and config watch fan-out: 10,000 instances (100 services × 100), 1,000 watchers
# blocked on one service; time from a health change (a TTL report) to each watcher, and to
# the last of them, seeing it. Then 1,000 config watchers of one application and a write.
# The same fan-out on etcd (Debian etcd-server): 10,000 keys under 100 prefixes, 1,000 watch
# streams on one prefix, a put. Everything runs on this machine in one run.
# Usage: bench/registry.sh [rounds, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-20}
OUT=bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; sleep 0.2; rm -rf "$WORK"; }
trap cleanup EXIT
command -v etcd >/dev/null || { echo "etcd not installed (apt-get install -y etcd-server)"; exit 1; }
cargo build --release -p signalbox -p signalbox-loadgen >&2
ulimit -n 65536 || true

SB_CONSOLE=127.0.0.1:19910
target/release/signalbox serve --data-dir "$WORK/sb" --listen 127.0.0.1:19911 --console-listen $SB_CONSOLE --consul-listen 127.0.0.1:19912 >/dev/null 2>"$WORK/sb.err" &
SB_PID=$!
for _ in $(seq 100); do curl -sf "http://$SB_CONSOLE/readyz" >/dev/null && break; sleep 0.1; done
echo "signalbox registry fan-out..." >&2
TARGET_PID=$SB_PID target/release/signalbox-loadgen registry-watch --url "http://$SB_CONSOLE" --rounds "$ROUNDS" > "$WORK/registry.json"
echo "signalbox config fan-out..." >&2
TARGET_PID=$SB_PID target/release/signalbox-loadgen config-watch --url "http://$SB_CONSOLE" --rounds "$ROUNDS" > "$WORK/config.json"
kill $SB_PID; wait $SB_PID 2>/dev/null || true

etcd --data-dir "$WORK/etcd" --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
  --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
  --initial-cluster default=http://127.0.0.1:12380 >/dev/null 2>"$WORK/etcd.err" &
ETCD_PID=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:12379/health >/dev/null && break; sleep 0.1; done
echo "etcd fan-out..." >&2
TARGET_PID=$ETCD_PID target/release/signalbox-loadgen etcd-watch --url http://127.0.0.1:12379 --rounds "$ROUNDS" > "$WORK/etcd.json"
kill $ETCD_PID; wait $ETCD_PID 2>/dev/null || true

python3 - "$WORK" "$ROUNDS" <<'PY' | tee "$OUT/registry-$(date -u +%Y%m%dT%H%M%SZ).md"
import json, sys
w, rounds = sys.argv[1], sys.argv[2]
rows = [json.load(open(f"{w}/{n}.json")) for n in ("registry", "config", "etcd")]
print(f"1,000 watchers, {rounds} changes each; 10,000 instances / keys; one 2-core machine\n")
print("| system | watch | per-watcher p50 ms | per-watcher p99 ms | all watchers p50 ms | all watchers p99 ms | RSS MiB | load s |")
print("|---|---|---|---|---|---|---|---|")
names = {"signalbox-registry": ("Signalbox", "registry: instance health change (blocking query)"),
         "signalbox-config": ("Signalbox", "config: value written (long-poll)"),
         "etcd": ("etcd 3.4", "key put (watch stream via JSON gateway)")}
for r in rows:
    sysname, what = names[r["bench"]]
    e = r["extra"]
    rss = (e.get("rss_bytes") or 0) / 2**20
    load = e.get("register_seconds") or e.get("load_seconds") or 0
    print(f"| {sysname} | {what} | {r['watcher_p50_ms']:.2f} | {r['watcher_p99_ms']:.2f} | {r['all_seen_p50_ms']:.2f} | {r['all_seen_p99_ms']:.2f} | {rss:.0f} | {load:.1f} |")
PY
