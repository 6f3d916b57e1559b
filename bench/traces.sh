#!/usr/bin/env bash
# Trace store: Signalbox against ClickHouse with the schema of Jaeger's ClickHouse backend
# (jaeger-clickhouse: a spans table of JSON models ordered by trace id, an index table of
# service, operation, duration and tags ordered by service and time), on the same spans.
# Signalbox: OTLP/gRPC ingest for 30 s (sustained rate, node CPU and RSS), then on to the
# total; bytes on disk once sealed; trace-by-id and tag+duration search latency.
# ClickHouse (Debian's 18.16, zstd): bulk TabSeparated load of the same traces over HTTP,
# OPTIMIZE ... FINAL, bytes of the active parts, the plugin's two queries for the same
# lookups. The generator is deterministic (seed, base time, spacing), so both get exactly
# the same spans. Everything, load generator included, shares this machine.
# Usage: bench/traces.sh [total spans, default 10000000]
# Env: SIGNALBOX_BIN and LOADGEN_BIN use these binaries instead of a release build;
# CH_ZSTD_LEVEL sets ClickHouse's zstd level (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-10000000}
SUSTAIN_S=30
CH_ZSTD_LEVEL=${CH_ZSTD_LEVEL:-1}
OUT=bench/results
mkdir -p "$OUT"
WORK=$(mktemp -d)
cleanup() {
  local pids; pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null
  for _ in $(seq 100); do
    [ -n "$(jobs -pr)" ] || break
    sleep 0.1
  done
  [ -n "$(jobs -pr)" ] && kill -9 $(jobs -pr) 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v clickhouse-server >/dev/null; then
  echo "installing ClickHouse (Debian clickhouse-server, clickhouse-client)..." >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y clickhouse-server clickhouse-client >&2 ||
    { $SUDO apt-get update >&2 && $SUDO apt-get install -y clickhouse-server clickhouse-client >&2; }
fi
if [ -z "${SIGNALBOX_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  cargo build --release -p signalbox -p signalbox-loadgen >&2
fi
SB_BIN=${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox}
LG=${LOADGEN_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox-loadgen}

CONSOLE=127.0.0.1:19940; OTLP=127.0.0.1:19943
CH_HTTP=127.0.0.1:18123; CH_TCP_PORT=19000
BASE_NS=$(($(date +%s) * 1000000000))
GEN=(--seed 1 --base-ns "$BASE_NS" --spacing-us 100)

now() { date +%s.%N; }
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; } # VmRSS, VmHWM
cpu_s() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
busy_s() { awk '/^cpu / {printf "%.2f", ($2+$3+$4+$7+$8+$9)/100}' /proc/stat; } # whole machine
metric() { curl -sf "http://$CONSOLE/metrics" | awk -v m="$1" '$1==m {print $2+0}'; }
ch() { curl -sS --fail-with-body --data-binary "$1" "http://$CH_HTTP/"; }
fact() { echo "$1=$2" >> "$WORK/facts"; }
: > "$WORK/facts"
fact total_requested "$TOTAL"

# --- Signalbox -------------------------------------------------------------------------
RUST_LOG=warn "$SB_BIN" serve --data-dir "$WORK/sb" --console-listen $CONSOLE --otlp-grpc-listen $OTLP \
  --listen 127.0.0.1:19941 --consul-listen 127.0.0.1:19942 --otlp-http-listen 127.0.0.1:19944 \
  --zipkin-listen 127.0.0.1:19945 >/dev/null 2>"$WORK/sb.err" &
SB_PID=$!
for _ in $(seq 100); do curl -sf "http://$CONSOLE/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://$CONSOLE/readyz" >/dev/null || { echo "signalbox did not start:"; cat "$WORK/sb.err"; exit 1; }

echo "signalbox: sustained OTLP/gRPC ingest for ${SUSTAIN_S}s..." >&2
t0=$(now); b0=$(busy_s)
TARGET_PID=$SB_PID "$LG" trace-ingest --url "http://$OTLP" "${GEN[@]}" --seconds $SUSTAIN_S --max-spans "$TOTAL" > "$WORK/ingest1.json"
fact sb_busy "$(python3 -c "print($(busy_s)-$b0)")"
SPANS1=$(json "$WORK/ingest1.json" spans); NEXT=$(json "$WORK/ingest1.json" traces_next)
if [ "$SPANS1" -lt "$TOTAL" ]; then
  echo "signalbox: ingest on to $TOTAL spans (from trace $NEXT)..." >&2
  TARGET_PID=$SB_PID "$LG" trace-ingest --url "http://$OTLP" "${GEN[@]}" --from "$NEXT" --seconds 1e9 \
    --max-spans $((TOTAL - SPANS1)) > "$WORK/ingest2.json"
  NEXT=$(json "$WORK/ingest2.json" traces_next)
else
  echo '{"spans": 0, "otlp_bytes": 0, "seconds": 0, "node_cpu_seconds": 0}' > "$WORK/ingest2.json"
fi
t1=$(now)
# Sealed: nothing left in the in-memory head or unsettled in the write-ahead log.
for _ in $(seq 240); do
  [ "$(metric signalbox_traces_head_spans)" = 0 ] && [ "$(metric signalbox_traces_wal_unsettled_spans)" = 0 ] && break
  sleep 0.5
done
sleep 2
t2=$(now)
fact traces "$NEXT"
fact sb_spans_stored "$(metric signalbox_traces_spans_stored)"
fact sb_disk_metric "$(metric signalbox_traces_disk_bytes)"
fact sb_blocks_du "$(du -sb "$WORK/sb/traces/blocks" | cut -f1)"
fact sb_wal_du "$(du -sb "$WORK/sb/traces/wal" | cut -f1)"
fact sb_rss_loaded "$(status_kb $SB_PID VmRSS)"
echo "signalbox: queries..." >&2
"$LG" trace-query --target signalbox --url "http://$CONSOLE" "${GEN[@]}" --traces "$NEXT" > "$WORK/sb-query.json"
t3=$(now)
fact sb_rss_end "$(status_kb $SB_PID VmRSS)"
fact sb_rss_peak "$(status_kb $SB_PID VmHWM)"
kill $SB_PID; wait $SB_PID 2>/dev/null || true
fact t_sb_ingest "$(python3 -c "print($t1-$t0)")"
fact t_sb_settle "$(python3 -c "print($t2-$t1)")"
fact t_sb_query "$(python3 -c "print($t3-$t2)")"

# --- ClickHouse ------------------------------------------------------------------------
# A standalone server in the work dir: loopback only, no interserver port, zstd for every
# part. 18.16 has no per-column CODEC; the Jaeger backend uses ZSTD(1), and ZSTD(3) for the
# span models. One level for all: 1, which on these spans came out smaller than 3 (the
# models: 13.4 MB at 1, 14.5 at 3, 12.2 at 6, for 350k spans), so ClickHouse is not
# handicapped.
mkdir -p "$WORK/ch"
cat > "$WORK/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>$WORK/ch/server.log</log><errorlog>$WORK/ch/server.err.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>${CH_HTTP##*:}</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <path>$WORK/ch/data/</path>
    <tmp_path>$WORK/ch/tmp/</tmp_path>
    <user_files_path>$WORK/ch/user_files/</user_files_path>
    <format_schema_path>$WORK/ch/format_schemas/</format_schema_path>
    <users_config>$WORK/ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>536870912</mark_cache_size>
    <compression>
        <case><min_part_size>0</min_part_size><min_part_size_ratio>0</min_part_size_ratio><method>zstd</method><level>$CH_ZSTD_LEVEL</level></case>
    </compression>
</yandex>
XML
cat > "$WORK/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>8000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
XML
clickhouse-server --config-file="$WORK/ch/config.xml" >"$WORK/ch/stdout" 2>&1 &
CH_PID=$!
for _ in $(seq 200); do curl -sf "http://$CH_HTTP/?query=SELECT%201" >/dev/null && break; sleep 0.1; done
curl -sf "http://$CH_HTTP/?query=SELECT%201" >/dev/null ||
  { echo "clickhouse did not start:"; cat "$WORK/ch/stdout" "$WORK/ch/server.err.log" 2>/dev/null; exit 1; }
fact ch_version "$(ch 'SELECT version()')"
fact ch_zstd_level "$CH_ZSTD_LEVEL"

echo "clickhouse: loading $NEXT traces..." >&2
t4=$(now); c0=$(cpu_s $CH_PID); b0=$(busy_s)
"$LG" clickhouse-load --url "http://$CH_HTTP" "${GEN[@]}" --traces "$NEXT" > "$WORK/ch-load.json"
t5=$(now); c1=$(cpu_s $CH_PID)
fact ch_busy "$(python3 -c "print($(busy_s)-$b0)")"
PARTS="FROM system.parts WHERE active AND database = currentDatabase()"
# Down to one part per partition. OPTIMIZE ... FINAL does nothing while a background merge
# runs (optimize_throw_if_noop makes that visible), so wait for merges and try again.
for table in jaeger_spans jaeger_index; do
  for _ in $(seq 1200); do
    [ "$(ch "SELECT count() - uniqExact(partition) $PARTS AND table = '$table'")" = 0 ] && break
    [ "$(ch "SELECT count() FROM system.merges WHERE database = currentDatabase() AND table = '$table'")" = 0 ] &&
      curl -s --data-binary "OPTIMIZE TABLE $table FINAL" "http://$CH_HTTP/?optimize_throw_if_noop=1" >/dev/null
    sleep 0.5
  done
done
t6=$(now); c2=$(cpu_s $CH_PID)
fact ch_load_cpu "$(python3 -c "print($c1-$c0)")"
fact ch_optimize_cpu "$(python3 -c "print($c2-$c1)")"
fact ch_bytes "$(ch "SELECT sum(bytes_on_disk) $PARTS")"
fact ch_bytes_spans "$(ch "SELECT sum(bytes_on_disk) $PARTS AND table = 'jaeger_spans'")"
fact ch_bytes_index "$(ch "SELECT sum(bytes_on_disk) $PARTS AND table = 'jaeger_index'")"
fact ch_uncompressed "$(ch "SELECT sum(data_uncompressed_bytes) $PARTS")"
fact ch_rows "$(ch "SELECT sum(rows) $PARTS AND table = 'jaeger_spans'")"
fact ch_parts "$(ch "SELECT count() $PARTS")"
fact ch_rss_loaded "$(status_kb $CH_PID VmRSS)"
echo "clickhouse: queries..." >&2
"$LG" trace-query --target clickhouse --url "http://$CH_HTTP" "${GEN[@]}" --traces "$NEXT" > "$WORK/ch-query.json"
t7=$(now)
fact ch_rss_end "$(status_kb $CH_PID VmRSS)"
fact ch_rss_peak "$(status_kb $CH_PID VmHWM)"
kill $CH_PID; wait $CH_PID 2>/dev/null || true
fact t_ch_load "$(python3 -c "print($t5-$t4)")"
fact t_ch_optimize "$(python3 -c "print($t6-$t5)")"
fact t_ch_query "$(python3 -c "print($t7-$t6)")"
fact cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) × $(nproc)"

python3 - "$WORK" <<'PY' | tee "$OUT/traces-$(date -u +%Y%m%dT%H%M%SZ).md"
import json, sys
w = sys.argv[1]
f = dict(l.rstrip("\n").split("=", 1) for l in open(f"{w}/facts") if "=" in l)
num = lambda k: float(f[k])
i1, i2 = (json.load(open(f"{w}/ingest{n}.json")) for n in (1, 2))
sq, cl, cq = (json.load(open(f"{w}/{n}.json")) for n in ("sb-query", "ch-load", "ch-query"))
spans = i1["spans"] + i2["spans"]
otlp_per_span = (i1["otlp_bytes"] + i2["otlp_bytes"]) / spans
sb_all = num("sb_blocks_du") + num("sb_wal_du")
sb_bps, sb_blocks_bps = sb_all / spans, num("sb_blocks_du") / spans
ch_bps = num("ch_bytes") / cl["spans"]
mib = lambda kb: float(kb) / 1024
print(f"{spans:,} spans in {int(f['traces']):,} traces (5 to 30 spans, HTTP/RPC/DB attributes, 2% failing); "
      f"OTLP protobuf {otlp_per_span:.0f} B/span; one machine: {f['cpu']}, load generator included\n")
print("| system | spans stored | ingest spans/s | ingest path | server CPU µs/span | bytes/span on disk | × smaller than OTLP | trace by id p50 / p99 ms | search p50 / p99 ms | search results (avg of 20) | RSS MiB loaded / peak |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| Signalbox | {int(num('sb_spans_stored')):,} | {i1['spans_per_second']:,.0f} | OTLP/gRPC, 4 exporters, {i1['seconds']:.0f} s sustained | "
      f"{i1['node_cpu_us_per_span']:.1f} | {sb_bps:.1f} (blocks {sb_blocks_bps:.1f} + WAL) | {otlp_per_span / sb_bps:.1f} | "
      f"{sq['by_id_p50_ms']:.2f} / {sq['by_id_p99_ms']:.2f} | {sq['search_p50_ms']:.2f} / {sq['search_p99_ms']:.2f} | "
      f"{sq['search_avg_results']:.1f} | {mib(f['sb_rss_loaded']):.0f} / {mib(f['sb_rss_peak']):.0f} |")
ch_cpu_us = (num("ch_load_cpu") + num("ch_optimize_cpu")) * 1e6 / cl["spans"]
print(f"| ClickHouse {f['ch_version']}, Jaeger schema | {int(num('ch_rows')):,} | {cl['spans_per_second']:,.0f} | bulk TabSeparated over HTTP, ~87k spans/insert (not OTLP) | "
      f"{ch_cpu_us:.1f} (incl. merges) | {ch_bps:.1f} | {otlp_per_span / ch_bps:.1f} | "
      f"{cq['by_id_p50_ms']:.2f} / {cq['by_id_p99_ms']:.2f} | {cq['search_p50_ms']:.2f} / {cq['search_p99_ms']:.2f} | "
      f"{cq['search_avg_results']:.1f} | {mib(f['ch_rss_loaded']):.0f} / {mib(f['ch_rss_peak']):.0f} |")
print()
print(f"- Signalbox: sustained {i1['spans_per_second']:,.0f} spans/s over {i1['seconds']:.1f} s "
      f"({i1['node_cpu_seconds'] / i1['seconds']:.2f} cores for the node, {i1['generator_cpu_seconds'] / i1['seconds']:.2f} for the generator, "
      f"RSS {i1['node_rss_bytes'] / 2**20:.0f} MiB)"
      + (f"; the remaining {i2['spans']:,} spans at {i2['spans'] / i2['seconds']:,.0f} spans/s. " if i2["spans"] else ". ")
      + f"On disk: blocks {num('sb_blocks_du') / 2**20:.1f} MiB (metric signalbox_traces_disk_bytes {num('sb_disk_metric') / 2**20:.1f} MiB), "
      f"write-ahead log {num('sb_wal_du') / 2**20:.1f} MiB (the open segment; settled segments are deleted).")
print(f"- ClickHouse: load {cl['seconds']:.1f} s ({cl['tsv_bytes'] / 2**20:,.0f} MiB of TSV), background merges and OPTIMIZE FINAL {num('t_ch_optimize'):.1f} s; "
      f"server CPU {num('ch_load_cpu'):.1f} s loading + {num('ch_optimize_cpu'):.1f} s merging; "
      f"generator {cl['generator_cpu_seconds']:.1f} s; "
      f"active parts {num('ch_bytes') / 2**20:.1f} MiB in {int(num('ch_parts'))} parts "
      f"(jaeger_spans {num('ch_bytes_spans') / 2**20:.1f}, jaeger_index {num('ch_bytes_index') / 2**20:.1f}; "
      f"{num('ch_uncompressed') / num('ch_bytes'):.1f}× from {num('ch_uncompressed') / 2**20:,.0f} MiB uncompressed). "
      f"18.16 has no per-column CODEC (zstd level {f['ch_zstd_level']} for every column via <compression>) and no data-skipping indices "
      "(the backend's tags.key bloom filter and duration minmax are missing).")
sb_other = num("sb_busy") - i1["node_cpu_seconds"] - i1["generator_cpu_seconds"]
ch_other = num("ch_busy") - num("ch_load_cpu") - cl["generator_cpu_seconds"]
print(f"- Other processes on the machine used {sb_other / i1['seconds']:.2f} cores during the sustained ingest and "
      f"{ch_other / cl['seconds']:.2f} during the ClickHouse load"
      + (" (noticeable: the ingest numbers are disturbed; rerun on a quiet machine)." if max(sb_other / i1['seconds'], ch_other / cl['seconds']) > 0.15 else "."))
print(f"- Queries: {sq['by_id_samples']} trace-by-id lookups of random traces (span counts checked) and {sq['search_samples']} searches "
      "(service + one tag + minimum duration over the whole range, limit 20); ClickHouse runs the backend's two queries "
      "(DISTINCT trace ids from jaeger_index, then the models PREWHERE traceID IN the ids).")
print(f"- Phases (s): Signalbox ingest {num('t_sb_ingest'):.0f}, sealing {num('t_sb_settle'):.0f}, queries {num('t_sb_query'):.0f}; "
      f"ClickHouse load {num('t_ch_load'):.0f}, optimize {num('t_ch_optimize'):.0f}, queries {num('t_ch_query'):.0f}.")
PY
