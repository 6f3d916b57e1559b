#!/usr/bin/env bash
# Log store: Signalbox against ClickHouse and a Loki-like baseline, on the same generated
# dataset (issue 9). The generator (signalbox-loadgen logs-gen) is deterministic: JSON
# microservice log lines, a trace_id and a request_id on every line, 8 services, five
# severities, message words from a Zipf-distributed vocabulary, one hour of timestamps.
#
# 1. Signalbox: `signalbox serve` on a temp data dir; the dataset POSTed to /api/logs as
#    gzip NDJSON batches by concurrent clients. MB/s of raw JSON, server CPU s/MB (from
#    /proc/<pid>/stat, ingest and ingest+sealing), bytes of <data dir>/logs once sealed,
#    VmRSS/VmHWM.
# 2. ClickHouse (Debian's clickhouse-server, a foreground server on loopback in the work
#    dir): the same gzip batches as INSERT ... FORMAT JSONEachRow into a Null table whose
#    materialized view writes a MergeTree ordered by (service, time); the same
#    measurements, bytes from system.parts (after merges and OPTIMIZE FINAL).
# 3. Loki-like: the lines per stream (service) cut into ~10 MB chunks, each compressed with
#    zstd (-3) to a file named by its time range; queries scan them with ripgrep (rg -z), as
#    Loki's line filters scan chunks (Loki's index narrows by stream and time only).
# 4. Query latency, p50/p99 over QUERY_RUNS runs after one warm-up run: needle trace_id,
#    rare word, frequent word (newest 100), count per minute by service, top 10 user_id,
#    and Signalbox's live-tail delivery delay (POST to SSE event).
#
# Usage: bench/logs.sh [MB of JSON, default 200]
# Env: SIGNALBOX_BIN and LOADGEN_BIN use these binaries instead of a release build;
# CLIENTS (default 4) concurrent ingest clients; BATCH_BYTES (default 2000000) raw bytes per
# batch; QUERY_RUNS (default 20); CH_ZSTD_LEVEL (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-200}
CLIENTS=${CLIENTS:-4}
BATCH_BYTES=${BATCH_BYTES:-2000000}
QUERY_RUNS=${QUERY_RUNS:-20}
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

need=()
command -v clickhouse-server >/dev/null || need+=(clickhouse-server clickhouse-client)
command -v rg >/dev/null || need+=(ripgrep)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}..." >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y "${need[@]}" >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y "${need[@]}" >&2; }
fi
if [ -z "${SIGNALBOX_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  cargo build --release -p signalbox -p signalbox-loadgen >&2
fi
SB_BIN=${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox}
LG=${LOADGEN_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox-loadgen}

CONSOLE=127.0.0.1:19950
CH_HTTP=127.0.0.1:18124; CH_TCP_PORT=19001

now() { date +%s.%N; }
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; } # VmRSS, VmHWM
cpu_s() { awk '{sub(/.*\) /, ""); printf "%.2f", ($12+$13)/100}' "/proc/$1/stat"; }
metric() { curl -sf "http://$CONSOLE/metrics" | awk -v m="$1" '$1==m {print $2+0}'; }
ch() { curl -sS --fail-with-body --data-binary "$1" "http://$CH_HTTP/"; }
fact() { echo "$1=$2" >> "$WORK/facts"; }
: > "$WORK/facts"
fact cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) × $(nproc)"
fact clients "$CLIENTS"; fact batch_bytes "$BATCH_BYTES"; fact runs "$QUERY_RUNS"

# --- The dataset -----------------------------------------------------------------------
END_MS=$(($(date +%s) * 1000))
echo "generating ${MB} MB of log lines..." >&2
"$LG" logs-gen --seed 1 --mb "$MB" --end-ms "$END_MS" --out "$WORK/logs.ndjson" > "$WORK/dataset.json"
cat "$WORK/dataset.json" >&2

# The query driver: Python over keep-alive HTTP (Signalbox, ClickHouse) or shell pipelines
# (Loki-like); one warm-up run, then QUERY_RUNS timed runs of each query.
cat > "$WORK/query.py" <<'PY'
import http.client, json, os, subprocess, sys, time, urllib.parse
target, addr, work, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
d = json.load(open(f"{work}/dataset.json"))
start, end = d["start_ms"], d["end_ms"]
conn = None
if target != "loki":
    h, p = addr.split(":")
    conn = http.client.HTTPConnection(h, int(p), timeout=120)

def get(path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"{target} {path}: HTTP {r.status}: {body[:500]!r}")
    return body

def sb(q, agg=False, **extra):
    args = {"query": q, "start": start, "end": end, **extra}
    path = ("/api/logs/aggregate?" if agg else "/api/logs?") + urllib.parse.urlencode(args)
    def run():
        v = json.loads(get(path))
        if agg:
            return len(v.get("series", v.get("values", [])))
        st = v.get("stats", {})
        return f'{len(v["records"])}; {st.get("blocks_read")} of {st.get("blocks")} blocks, {st.get("pages_read")} pages read'

    return run

def ch(sql):
    path = "/?" + urllib.parse.urlencode({"query": sql + " FORMAT JSONCompact"})
    return lambda: json.loads(get(path))["rows"]

L = f"{work}/loki"
def sh(cmd):
    return subprocess.run(["bash", "-c", cmd], check=True, capture_output=True, text=True).stdout

def chunks(svc):  # one stream's chunk files, newest first
    return sorted((os.path.join(L, svc, f) for f in os.listdir(os.path.join(L, svc))), reverse=True)

def loki_grep(pattern, limit):
    # rg -z decompresses every chunk (zstd) and filters in parallel; newest `limit` kept.
    def run():
        out = sh(f"rg -z -N --no-filename -i {pattern} {L} || true").splitlines()
        out.sort(reverse=True)  # lines start with their RFC 3339 timestamp
        return len(out[:limit])
    return run

def loki_newest(word, limit):
    # Loki's backward query: per stream, chunks newest first until `limit` lines matched.
    def run():
        got = []
        for svc in os.listdir(L):
            n = 0
            for c in chunks(svc):
                lines = sh(f"zstd -dcq {c} | rg -N -i -w {word} || true").splitlines()
                got += lines
                n += len(lines)
                if n >= limit:
                    break
        got.sort(reverse=True)
        return len(got[:limit])
    return run

def loki_count():
    # count_over_time per minute by stream: the timestamp's minute is bytes 15-30 of a line.
    def run():
        out = sh(f"find {L} -name '*.zst' | xargs -P 2 -n 1 sh -c "
                 "'zstd -dcq \"$0\" | cut -c15-30 | uniq -c | sed \"s|^|$(basename $(dirname $0)) |\"'")
        acc = {}
        for l in out.splitlines():
            svc, n, minute = l.split()
            acc[(svc, minute)] = acc.get((svc, minute), 0) + int(n)
        return len({s for s, _ in acc})
    return run

def loki_top():
    def run():
        out = sh(f"rg -z -o -N --no-filename '\"user_id\":\"[^\"]*\"' {L} | awk '{{c[$0]++}} END {{for (k in c) print c[k], k}}' | sort -rn | head -10")
        return len(out.splitlines())
    return run

t, rare, freq = d["needle_trace_id"], d["rare_word"], d["frequent_word"]
cols = "time, ms, level, service, instance, trace_id, span_id, request_id, user_id, route, status, latency_ms, msg"
newest = "ORDER BY time DESC, ms DESC LIMIT 100"
queries = {
    "signalbox": {
        "needle": sb(f"trace_id:{t}", limit=100),
        "rare": sb(rare, limit=100),
        "frequent": sb(freq, limit=100),
        "count": sb("| count by service", agg=True, step="1m"),
        "top": sb("| top 10 user_id", agg=True),
    },
    "clickhouse": {
        "needle": ch(f"SELECT {cols} FROM logs WHERE trace_id = '{t}' {newest}"),
        "rare": ch(f"SELECT {cols} FROM logs WHERE msg LIKE '%{rare}%' {newest}"),
        "frequent": ch(f"SELECT {cols} FROM logs WHERE msg LIKE '%{freq}%' {newest}"),
        "count": ch("SELECT service, toStartOfMinute(time) AS t, count() FROM logs GROUP BY service, t ORDER BY service, t"),
        "top": ch("SELECT user_id, count() AS c FROM logs GROUP BY user_id ORDER BY c DESC LIMIT 10"),
    },
    "loki": {
        "needle": loki_grep(f"-F {t}", 100),
        "rare": loki_grep(f"-w {rare}", 100),
        "frequent": loki_newest(freq, 100),
        "count": loki_count(),
        "top": loki_top(),
    },
}[target]
res = {}
for name, q in queries.items():
    results = q()  # warm-up
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        q()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    res[name] = {"p50_ms": ms[round((len(ms) - 1) * 0.5)], "p99_ms": ms[round((len(ms) - 1) * 0.99)], "results": results}
    print(f"{target} {name}: {res[name]}", file=sys.stderr)
print(json.dumps(res))
PY

# --- Signalbox -------------------------------------------------------------------------
RUST_LOG=warn "$SB_BIN" serve --data-dir "$WORK/sb" --console-listen $CONSOLE \
  --listen 127.0.0.1:19951 --consul-listen 127.0.0.1:19952 --otlp-grpc-listen 127.0.0.1:19953 \
  --otlp-http-listen 127.0.0.1:19954 --zipkin-listen 127.0.0.1:19955 >/dev/null 2>"$WORK/sb.err" &
SB_PID=$!
for _ in $(seq 100); do curl -sf "http://$CONSOLE/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://$CONSOLE/readyz" >/dev/null || { echo "signalbox did not start:"; cat "$WORK/sb.err"; exit 1; }
fact sb_rss_idle "$(status_kb $SB_PID VmRSS)"

echo "signalbox: ingest over POST /api/logs..." >&2
c0=$(cpu_s $SB_PID)
TARGET_PID=$SB_PID "$LG" logs-ingest --url "http://$CONSOLE/api/logs" --file "$WORK/logs.ndjson" \
  --clients "$CLIENTS" --batch-bytes "$BATCH_BYTES" > "$WORK/sb-ingest.json"
fact sb_rss_ingest "$(status_kb $SB_PID VmRSS)"
cat "$WORK/sb-ingest.json" >&2
# Sealed: nothing left in the in-memory head.
t1=$(now)
for _ in $(seq 240); do
  [ "$(metric signalbox_logs_head_records)" = 0 ] && break
  sleep 0.5
done
sleep 2
fact t_sb_seal "$(python3 -c "print($(now)-$t1)")"
fact sb_cpu_sealed "$(python3 -c "print($(cpu_s $SB_PID)-$c0)")"
fact sb_logs_du "$(du -sb "$WORK/sb/logs" | cut -f1)"
fact sb_block_bytes_metric "$(metric signalbox_logs_block_bytes)"
fact sb_blocks "$(metric signalbox_logs_blocks)"
fact sb_rss_loaded "$(status_kb $SB_PID VmRSS)"
(cd "$WORK/sb/logs" && find . -type f -printf '%s %p\n' | sort -k2 | awk '{d=$2; sub(/\/[^\/]*$/, "", d); s[d]+=$1} END {for (k in s) printf "%s:%d ", k, s[k]}') > "$WORK/sb-layout"
fact sb_layout "$(cat "$WORK/sb-layout")"
echo "signalbox: queries..." >&2
python3 "$WORK/query.py" signalbox "$CONSOLE" "$WORK" "$QUERY_RUNS" > "$WORK/sb-query.json"
echo "signalbox: live tail..." >&2
"$LG" logs-tail --url "http://$CONSOLE" --samples "$QUERY_RUNS" > "$WORK/sb-tail.json"
fact sb_rss_end "$(status_kb $SB_PID VmRSS)"
fact sb_rss_peak "$(status_kb $SB_PID VmHWM)"
kill $SB_PID; wait $SB_PID 2>/dev/null || true

# --- ClickHouse ------------------------------------------------------------------------
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
    <timezone>UTC</timezone>
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
fact ch_rss_idle "$(status_kb $CH_PID VmRSS)"
# JSONEachRow lands in a Null table; the view parses the RFC 3339 time (18.16 reads only
# "YYYY-MM-DD hh:mm:ss" into DateTime) into seconds (`time`; a `timestamp` alias would shadow
# the input column in 18.16's views) and milliseconds.
FIELDS="level String, service String, instance String, trace_id String, span_id String, request_id String,
  user_id String, route String, status UInt16, latency_ms UInt32, msg String"
ch "CREATE TABLE logs_in (timestamp String, $FIELDS) ENGINE = Null"
ch "CREATE TABLE logs (time DateTime, ms UInt16, $FIELDS) ENGINE = MergeTree
  PARTITION BY toDate(time) ORDER BY (service, time, ms)"
ch "CREATE MATERIALIZED VIEW logs_mv TO logs AS SELECT parseDateTimeBestEffort(timestamp) AS time,
  toUInt16(substring(timestamp, 21, 3)) AS ms, level, service, instance, trace_id, span_id, request_id, user_id,
  route, status, latency_ms, msg FROM logs_in"

echo "clickhouse: ingest as JSONEachRow..." >&2
c0=$(cpu_s $CH_PID)
TARGET_PID=$CH_PID "$LG" logs-ingest --url "http://$CH_HTTP/?query=INSERT%20INTO%20logs_in%20FORMAT%20JSONEachRow" \
  --file "$WORK/logs.ndjson" --clients "$CLIENTS" --batch-bytes "$BATCH_BYTES" > "$WORK/ch-ingest.json"
fact ch_rss_ingest "$(status_kb $CH_PID VmRSS)"
cat "$WORK/ch-ingest.json" >&2
PARTS="FROM system.parts WHERE active AND database = currentDatabase() AND table = 'logs'"
# Background merges settle (the bytes a user sees), then OPTIMIZE ... FINAL (the best).
t1=$(now)
for _ in $(seq 600); do
  [ "$(ch "SELECT count() FROM system.merges WHERE database = currentDatabase()")" = 0 ] && sleep 2 &&
    [ "$(ch "SELECT count() FROM system.merges WHERE database = currentDatabase()")" = 0 ] && break
  sleep 0.5
done
fact ch_bytes_settled "$(ch "SELECT sum(bytes_on_disk) $PARTS")"
fact ch_parts_settled "$(ch "SELECT count() $PARTS")"
fact ch_cpu_settled "$(python3 -c "print($(cpu_s $CH_PID)-$c0)")"
fact t_ch_settle "$(python3 -c "print($(now)-$t1)")"
for _ in $(seq 1200); do
  [ "$(ch "SELECT count() - uniqExact(partition) $PARTS")" = 0 ] && break
  [ "$(ch "SELECT count() FROM system.merges WHERE database = currentDatabase()")" = 0 ] &&
    curl -s --data-binary "OPTIMIZE TABLE logs FINAL" "http://$CH_HTTP/?optimize_throw_if_noop=1" >/dev/null
  sleep 0.5
done
fact ch_cpu_optimized "$(python3 -c "print($(cpu_s $CH_PID)-$c0)")"
fact ch_bytes "$(ch "SELECT sum(bytes_on_disk) $PARTS")"
fact ch_uncompressed "$(ch "SELECT sum(data_uncompressed_bytes) $PARTS")"
fact ch_rows "$(ch "SELECT sum(rows) $PARTS")"
fact ch_parts "$(ch "SELECT count() $PARTS")"
fact ch_rss_loaded "$(status_kb $CH_PID VmRSS)"
echo "clickhouse: queries..." >&2
python3 "$WORK/query.py" clickhouse "$CH_HTTP" "$WORK" "$QUERY_RUNS" > "$WORK/ch-query.json"
fact ch_rss_end "$(status_kb $CH_PID VmRSS)"
fact ch_rss_peak "$(status_kb $CH_PID VmHWM)"
kill $CH_PID; wait $CH_PID 2>/dev/null || true

# --- Loki-like: zstd chunks per stream, scanned with ripgrep ----------------------------
echo "loki-like: chunking..." >&2
t1=$(now)
python3 - "$WORK" <<'PY'
import os, subprocess, sys
work = sys.argv[1]
L, CHUNK = f"{work}/loki", 10_000_000
bufs, sizes, seq = {}, {}, {}
def flush(svc):
    lines = bufs.pop(svc)
    sizes[svc] = 0
    first, last = lines[0][14:38].decode(), lines[-1][14:38].decode()
    os.makedirs(f"{L}/{svc}", exist_ok=True)
    n = seq[svc] = seq.get(svc, 0) + 1
    subprocess.run(["zstd", "-q", "-3", "-o", f"{L}/{svc}/{first}_{last}_{n:05d}.zst"], input=b"".join(lines), check=True)
with open(f"{work}/logs.ndjson", "rb") as f:
    for line in f:
        i = line.index(b'"service":"') + 11
        svc = line[i:line.index(b'"', i)].decode()
        bufs.setdefault(svc, []).append(line)
        sizes[svc] = sizes.get(svc, 0) + len(line)
        if sizes[svc] >= CHUNK:
            flush(svc)
for svc in list(bufs):
    flush(svc)
PY
fact t_loki_chunk "$(python3 -c "print($(now)-$t1)")"
fact loki_bytes "$(du -sb "$WORK/loki" | cut -f1)"
fact loki_chunks "$(find "$WORK/loki" -name '*.zst' | wc -l)"
echo "loki-like: queries..." >&2
python3 "$WORK/query.py" loki - "$WORK" "$QUERY_RUNS" > "$WORK/loki-query.json"

python3 - "$WORK" "$MB" <<'PY' | tee "$OUT/logs-$(date -u +%Y%m%dT%H%M%SZ).md"
import json, sys
w, mb_arg = sys.argv[1], sys.argv[2]
f = dict(l.rstrip("\n").split("=", 1) for l in open(f"{w}/facts") if "=" in l)
num = lambda k: float(f[k])
d = json.load(open(f"{w}/dataset.json"))
si, ci = json.load(open(f"{w}/sb-ingest.json")), json.load(open(f"{w}/ch-ingest.json"))
sq, cq, lq = (json.load(open(f"{w}/{n}-query.json")) for n in ("sb", "ch", "loki"))
tail = json.load(open(f"{w}/sb-tail.json"))
MB = d["bytes"] / 1e6
mib = lambda kb: float(kb) / 1024
print(f"Dataset: {MB:,.0f} MB of JSON (`bench/logs.sh {mb_arg}`), {d['lines']:,} lines "
      f"({d['bytes'] / d['lines']:.0f} B/line), {d['requests']:,} requests, one hour; gzip batches of "
      f"{int(num('batch_bytes')) / 1e6:.0f} MB raw ({si['gzip_bytes'] / si['raw_bytes'] * 100:.0f} % gzipped), "
      f"{f['clients']} concurrent clients. One machine: {f['cpu']}, load generator and baselines included.\n")
sb_disk, ch_disk, lk_disk = num("sb_logs_du"), num("ch_bytes"), num("loki_bytes")
sb_cpu, ch_cpu = si["target_cpu_seconds"] / MB, ci["target_cpu_seconds"] / MB
print("| | Signalbox | ClickHouse " + f["ch_version"] + " | Loki-like (zstd chunks + rg) | Signalbox ÷ ClickHouse | goal |")
print("|---|---|---|---|---|---|")
print(f"| ingest MB/s of raw JSON | {si['mb_per_second']:.1f} | {ci['mb_per_second']:.1f} | – | "
      f"{si['mb_per_second'] / ci['mb_per_second']:.2f}× | ≥ 1.0× |")
print(f"| server CPU s/MB while ingesting | {sb_cpu:.3f} | {ch_cpu:.3f} | – | {sb_cpu / ch_cpu:.2f}× | |")
print(f"| server CPU s/MB incl. sealing / merges+OPTIMIZE | {num('sb_cpu_sealed') / MB:.3f} | {num('ch_cpu_optimized') / MB:.3f} | – | "
      f"{num('sb_cpu_sealed') / num('ch_cpu_optimized'):.2f}× | |")
print(f"| bytes on disk | {sb_disk / 1e6:.1f} MB ({MB * 1e6 / sb_disk:.1f}× smaller than JSON) | "
      f"{ch_disk / 1e6:.1f} MB ({MB * 1e6 / ch_disk:.1f}×; {num('ch_bytes_settled') / 1e6:.1f} MB before OPTIMIZE) | "
      f"{lk_disk / 1e6:.1f} MB ({MB * 1e6 / lk_disk:.1f}×) | {sb_disk / ch_disk:.2f}× | ≤ 0.7× |")
print(f"| RSS MiB after ingest / peak | {mib(f['sb_rss_ingest']):.0f} / {mib(f['sb_rss_peak']):.0f} | "
      f"{mib(f['ch_rss_ingest']):.0f} / {mib(f['ch_rss_peak']):.0f} | – | | |")
names = {"needle": "needle: one trace_id, whole range", "rare": f"rare word `{d['rare_word']}` ({d['rare_word_count']} occurrences)",
         "frequent": f"frequent word `{d['frequent_word']}` ({d['frequent_word_count']:,} occurrences), newest 100",
         "count": "count per minute by service", "top": "top 10 user_id"}
goals = {"needle": "≤ 10 ms p99 and < ClickHouse", "rare": "≤ ClickHouse", "frequent": "≤ ClickHouse", "count": "≤ ClickHouse", "top": "≤ ClickHouse"}
for k, name in names.items():
    s, c, l = sq[k], cq[k], lq[k]
    print(f"| {name}, p50 / p99 ms (results) | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} ({s['results']}) | "
          f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f} ({c['results']}) | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} ({l['results']}) | "
          f"{s['p99_ms'] / c['p99_ms']:.2f}× (p99) | {goals[k]} |")
print(f"| live tail: POST to SSE event, p50 / p99 ms | {tail['p50_ms']:.1f} / {tail['p99_ms']:.1f} | – (no tail) | – | | |")
print()
print(f"- Signalbox: {si['raw_bytes'] / 1e6:,.0f} MB in {si['seconds']:.1f} s ({si['retries']} batches retried after 429/503), "
      f"sealed {num('t_sb_seal'):.0f} s later; {int(num('sb_blocks'))} blocks, signalbox_logs_block_bytes "
      f"{num('sb_block_bytes_metric') / 1e6:.1f} MB; files under logs/: {f['sb_layout']}; RSS idle {mib(f['sb_rss_idle']):.0f} MiB, "
      f"loaded {mib(f['sb_rss_loaded']):.0f} MiB.")
print(f"- ClickHouse: {ci['raw_bytes'] / 1e6:,.0f} MB in {ci['seconds']:.1f} s ({ci['retries']} retried), "
      f"{int(num('ch_rows')):,} rows; merges settled {num('t_ch_settle'):.0f} s after the load "
      f"({int(num('ch_parts_settled'))} parts, {num('ch_bytes_settled') / 1e6:.1f} MB), then OPTIMIZE FINAL: "
      f"{int(num('ch_parts'))} parts, {ch_disk / 1e6:.1f} MB ({num('ch_uncompressed') / ch_disk:.1f}× from "
      f"{num('ch_uncompressed') / 1e6:,.0f} MB uncompressed), zstd level {f['ch_zstd_level']} for every column. "
      "Word searches are `msg LIKE '%word%'` (substring, no token index in 18.16), newest 100 by time.")
print(f"- Loki-like: {int(num('loki_chunks'))} chunks (~10 MB raw each, zstd -3) in {num('t_loki_chunk'):.0f} s (a script, "
      "not a server: no ingest rate). Filters: `rg -z` over every chunk; newest-100: per stream, chunks newest first until 100; "
      "count: the minute of each line's timestamp per chunk; top: `rg -o` of the field, counted.")
other = lambda i: (i["machine_busy_seconds"] - i["target_cpu_seconds"] - i["generator_cpu_seconds"]) / i["seconds"]
print(f"- While sending: the clients used {si['generator_cpu_seconds'] / si['seconds']:.2f} cores (Signalbox) and "
      f"{ci['generator_cpu_seconds'] / ci['seconds']:.2f} (ClickHouse); other processes on the machine "
      f"{other(si):.2f} and {other(ci):.2f} cores" + (" (noticeable: rerun on a quiet machine)." if max(other(si), other(ci)) > 0.15 else "."))
print(f"- Latency: one warm-up run, then {f['runs']} runs of each query (p99 of {f['runs']} is about the slowest run), "
      "Python over keep-alive HTTP for Signalbox and ClickHouse, subprocesses for the Loki-like baseline.")
PY
