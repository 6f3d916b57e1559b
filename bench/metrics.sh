#!/usr/bin/env bash
# Metrics store: Signalbox against Prometheus 2.42 (Debian's /usr/bin/prometheus) on the
# same workload (issue 10). The load generator (signalbox-loadgen metrics-*) is
# deterministic: node-exporter-like hosts of counters, gauges and 11-bucket histograms.
#
# 1. Scrape: TARGETS targets (one port each) of TARGET_SERIES series, scraped every 10 s by
#    both systems at once for SCRAPE_S seconds (same targets, interval, retention). Server
#    CPU per appended sample (/proc/<pid>/stat over the window; samples from
#    prometheus_tsdb_head_samples_appended_total / signalbox_tsdb_samples_appended_total),
#    RSS per head series (prometheus_tsdb_head_series / signalbox_tsdb_head_series), and
#    count(up == 1) to show every target was scraped.
# 2. remote_write replay, one system at a time on a fresh data dir: SERIES series ×
#    SAMPLES samples SPACING_S (15) s apart, ending ~10 min ago, 2,000 samples per request; as
#    Prometheus's remote_write queue, CONCURRENCY shards of series, each sent in step
#    order by its own sender; the requests are generated once into a file so both get
#    the same bytes. Samples/s and server CPU per sample while ingesting; failed requests
#    (any non-2xx but 429/503, which are retried) are counted. Then wait until the head has
#    been cut into blocks as both cut it (while the head spans > 1.5 × the 2 h block range,
#    the oldest aligned 2 h goes to a block); bytes per sample = du of the block dirs /
#    samples in their meta.json; also du of the WAL (+ Prometheus's chunks_head).
#    RSS per head series after the cut. The fixed query set (metrics-query, QUERY_RUNS runs
#    after a warm-up): rate summed by a label over 1 h, histogram_quantile over 1 h, topk,
#    a 24 h range query at 60 s steps, a regex matcher over the pod label (one value per
#    host). Then kill -9, restart, and time until count(bench_resident_bytes) at the
#    replay's end answers the full count (metrics-wait).
#
# Usage: bench/metrics.sh [replay series, default 20000] [samples per series, default 1000]
# Env: SIGNALBOX_BIN and LOADGEN_BIN use these binaries instead of a release build;
# TARGETS (100), TARGET_SERIES (2000), SCRAPE_S (180), CONCURRENCY (16 shards; Prometheus
# scales its remote_write shards up to 200), QUERY_RUNS (20), PROMETHEUS_BIN
# (/usr/bin/prometheus), QUERY_TIMEOUT (both systems' query timeout, 2m as Prometheus's),
# MAX_SAMPLES (both systems' query sample limit, 50M as Prometheus's
# default; a 1M-series replay's 24 h range query needs more), SPACING_S (15: seconds between a replayed series's samples; 120 lets
# 100 samples per series span the > 3 h a block cut needs).
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-20000}
SAMPLES=${2:-1000}
TARGETS=${TARGETS:-100}
TARGET_SERIES=${TARGET_SERIES:-2000}
SCRAPE_S=${SCRAPE_S:-180}
CONCURRENCY=${CONCURRENCY:-16}
QUERY_RUNS=${QUERY_RUNS:-20}
MAX_SAMPLES=${MAX_SAMPLES:-50000000} # both systems' query sample limit (Prometheus's default)
QUERY_TIMEOUT=${QUERY_TIMEOUT:-2m}    # both systems' query timeout (Prometheus's default)
PROM_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PER_HOST=100
SPACING_MS=$(( ${SPACING_S:-15} * 1000 ))
BATCH=2000
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

[ -x "$PROM_BIN" ] || { echo "no Prometheus at $PROM_BIN (apt-get install prometheus, or set PROMETHEUS_BIN)" >&2; exit 1; }
[ $((SERIES % PER_HOST)) = 0 ] || { echo "the replay's series must be a multiple of $PER_HOST" >&2; exit 1; }
if [ -z "${SIGNALBOX_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  cargo build --release -p signalbox -p signalbox-loadgen >&2
fi
SB_BIN=${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox}
LG=${LOADGEN_BIN:-${CARGO_TARGET_DIR:-target}/release/signalbox-loadgen}

CONSOLE=127.0.0.1:19960; PROM=127.0.0.1:19969; TARGET_PORT=19700
SB_API=http://$CONSOLE/prometheus; PROM_API=http://$PROM

now() { date +%s.%N; }
json() { python3 -c "import json,sys; v=json.load(open(sys.argv[1])); [v:=v[k] for k in sys.argv[2:]]; print(v)" "$@"; }
status_kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; } # VmRSS, VmHWM
cpu_s() { awk '{sub(/^.*\) /, ""); printf "%.2f", ($12+$13)/100}' "/proc/$1/stat"; }
busy_s() { awk '/^cpu / {printf "%.2f", ($2+$3+$4+$7+$8+$9)/100}' /proc/stat; } # whole machine
metric() { # url name: the sum over the metric's label sets (0 while it has none)
  curl -sf "$1" | awk -v m="$2" '{n=$1; sub(/[{].*/, "", n)} n==m {s+=$NF} END {printf "%.0f\n", s}'
}
sb_metric() { metric "http://$CONSOLE/metrics" "$1"; }
prom_metric() { metric "http://$PROM/metrics" "$1"; }
instant() { # base query: the single value of an instant query now
  curl -sfG "$1/api/v1/query" --data-urlencode "query=$2" |
    python3 -c "import json,sys; r=json.load(sys.stdin)['data']['result']; print(r[0]['value'][1] if r else 0)"
}
fact() { echo "$1=$2" >> "$WORK/facts"; }
: > "$WORK/facts"
fact cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) × $(nproc)"
fact prom_version "$("$PROM_BIN" --version 2>&1 | head -1)"
fact load_before "$(cut -d' ' -f1-3 /proc/loadavg)"

start_sb() { # data dir, config file
  RUST_LOG=warn "$SB_BIN" serve --config "$2" --data-dir "$1" --console-listen $CONSOLE \
    --listen 127.0.0.1:19961 --consul-listen 127.0.0.1:19962 --otlp-grpc-listen 127.0.0.1:19963 \
    --otlp-http-listen 127.0.0.1:19964 --zipkin-listen 127.0.0.1:19965 >/dev/null 2>>"$WORK/sb.err" &
  SB_PID=$!
  SB_STARTED=$(now)
  for _ in $(seq 300); do curl -sf "http://$CONSOLE/readyz" >/dev/null && return; sleep 0.1; done
  echo "signalbox did not start:"; cat "$WORK/sb.err"; exit 1
}
start_prom() { # data dir, config file
  "$PROM_BIN" --config.file="$2" --storage.tsdb.path="$1" --web.listen-address=$PROM \
    --web.enable-remote-write-receiver --storage.tsdb.retention.time=15d --log.level=warn \
    --query.max-samples=$MAX_SAMPLES --query.timeout=$QUERY_TIMEOUT >/dev/null 2>>"$WORK/prom.err" &
  PROM_PID=$!
  for _ in $(seq 300); do curl -sf "http://$PROM/-/ready" >/dev/null && return; sleep 0.1; done
  echo "prometheus did not start:"; cat "$WORK/prom.err"; exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Equivalent configs: 10 s interval, 15 d retention, 2 h blocks; Signalbox stores nothing
# of its own (self_interval 0, no registry scraping), Prometheus does not scrape itself.
write_configs() { # with scrape job: yes/no
  local targets
  targets=$(python3 -c "print(', '.join(f'\"127.0.0.1:{$TARGET_PORT + i}\"' for i in range($TARGETS)))")
  cat > "$WORK/sb.toml" <<TOML
[metrics]
retention = "15d"
block_range = "2h"
query_max_samples = $MAX_SAMPLES
query_timeout = "$QUERY_TIMEOUT"
self_interval = "0s"
scrape_registry = false
TOML
  printf 'global:\n  scrape_interval: 10s\n  scrape_timeout: 10s\n  evaluation_interval: 1m\n' > "$WORK/prom.yml"
  if [ "$1" = yes ]; then
    cat >> "$WORK/sb.toml" <<TOML

[[metrics.scrape]]
job_name = "bench"
scrape_interval = "10s"
scrape_timeout = "10s"
static_configs = [{ targets = [$targets] }]
TOML
    printf 'scrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: [%s]\n' "$targets" >> "$WORK/prom.yml"
  fi
}

# --- 1. Scrape ---------------------------------------------------------------------------
echo "scrape: $TARGETS targets × $TARGET_SERIES series every 10 s, both systems, ${SCRAPE_S}s..." >&2
"$LG" metrics-targets --base-port $TARGET_PORT --targets "$TARGETS" --series "$TARGET_SERIES" --interval-ms 10000 \
  > "$WORK/targets.json" 2>"$WORK/targets.err" &
TARGETS_PID=$!
for _ in $(seq 100); do [ -s "$WORK/targets.json" ] && break; sleep 0.1; done
[ -s "$WORK/targets.json" ] || { echo "metrics-targets did not start:"; cat "$WORK/targets.err"; exit 1; }
write_configs yes
start_prom "$WORK/prom-scrape" "$WORK/prom.yml"
start_sb "$WORK/sb-scrape" "$WORK/sb.toml"
fact scrape_prom_rss_idle "$(status_kb $PROM_PID VmRSS)"
fact scrape_sb_rss_idle "$(status_kb $SB_PID VmRSS)"
sleep 25 # two scrapes in: every series exists, the window below measures steady state
p0=$(prom_metric prometheus_tsdb_head_samples_appended_total); s0=$(sb_metric signalbox_tsdb_samples_appended_total)
pc0=$(cpu_s $PROM_PID); sc0=$(cpu_s $SB_PID); t0=$(now); b0=$(busy_s); lc0=$(cpu_s $TARGETS_PID)
sleep "$SCRAPE_S"
p1=$(prom_metric prometheus_tsdb_head_samples_appended_total); s1=$(sb_metric signalbox_tsdb_samples_appended_total)
pc1=$(cpu_s $PROM_PID); sc1=$(cpu_s $SB_PID); t1=$(now)
fact scrape_seconds "$(python3 -c "print($t1-$t0)")"
fact scrape_other_cpu "$(python3 -c "print($(busy_s)-$b0-($pc1-$pc0)-($sc1-$sc0)-($(cpu_s $TARGETS_PID)-$lc0))")"
fact scrape_prom_samples "$(python3 -c "print($p1-$p0)")"; fact scrape_sb_samples "$(python3 -c "print($s1-$s0)")"
fact scrape_prom_cpu "$(python3 -c "print($pc1-$pc0)")"; fact scrape_sb_cpu "$(python3 -c "print($sc1-$sc0)")"
fact scrape_prom_series "$(prom_metric prometheus_tsdb_head_series)"; fact scrape_sb_series "$(sb_metric signalbox_tsdb_head_series)"
fact scrape_prom_rss "$(status_kb $PROM_PID VmRSS)"; fact scrape_sb_rss "$(status_kb $SB_PID VmRSS)"
fact scrape_prom_up "$(instant "$PROM_API" 'count(up == 1)')"; fact scrape_sb_up "$(instant "$SB_API" 'count(up == 1)')"
stop $PROM_PID; stop $SB_PID; stop $TARGETS_PID
rm -rf "$WORK/prom-scrape" "$WORK/sb-scrape"

# --- 2. remote_write replay --------------------------------------------------------------
START_MS=$(( ($(date +%s) - 600) * 1000 - SAMPLES * SPACING_MS ))
echo "replay: generating $SERIES series × $SAMPLES samples..." >&2
"$LG" metrics-replay-gen --series "$SERIES" --samples-per-series "$SAMPLES" --per-host $PER_HOST \
  --start-ms $START_MS --spacing-ms $SPACING_MS --batch $BATCH --shards "$CONCURRENCY" --out "$WORK/replay.bin" > "$WORK/gen.json"
cat "$WORK/gen.json" >&2
END_MS=$(json "$WORK/gen.json" end_ms)
GAUGES=$(json "$WORK/gen.json" gauge_series)
# The blocks both cut: while the head spans > 3 h, the oldest aligned 2 h range.
EXPECT_BLOCKS=$(python3 -c "
r, lo, hi = 7_200_000, $START_MS, $END_MS - $SPACING_MS
n = 0
while hi - lo > r + r // 2:
    lo = lo // r * r + r; n += 1
print(n)")
fact expect_blocks "$EXPECT_BLOCKS"
write_configs no

replay_one() { # name, pid, remote_write url, query base, blocks metric fn, blocks metric, block dir glob root, wal dirs...
  local name=$1 pid=$2 url=$3 api=$4 mfn=$5 mblocks=$6 root=$7; shift 7
  echo "$name: replay..." >&2
  fact "${name}_rss_idle" "$(status_kb "$pid" VmRSS)"
  local c0 b0 t0; c0=$(cpu_s "$pid"); b0=$(busy_s); t0=$(now)
  TARGET_PID=$pid "$LG" metrics-replay --url "$url" --file "$WORK/replay.bin" > "$WORK/$name-replay.json"
  cat "$WORK/$name-replay.json" >&2
  fact "${name}_other_cpu" "$(python3 -c "print($(busy_s)-$b0-$(json "$WORK/$name-replay.json" node_cpu_seconds)-$(json "$WORK/$name-replay.json" generator_cpu_seconds))")"
  echo "$name: waiting for $EXPECT_BLOCKS block(s)..." >&2
  local t1; t1=$(now)
  for _ in $(seq 600); do
    [ "$($mfn "$mblocks")" -ge "$EXPECT_BLOCKS" ] 2>/dev/null && break
    sleep 0.5
  done
  sleep 2
  fact "${name}_blocks" "$($mfn "$mblocks")"
  fact "${name}_t_blocks" "$(python3 -c "print($(now)-$t1)")"
  fact "${name}_cpu_total" "$(python3 -c "print($(cpu_s "$pid")-$c0)")"
  fact "${name}_rss" "$(status_kb "$pid" VmRSS)"
  fact "${name}_block_bytes" "$(find "$root" -mindepth 2 -maxdepth 2 -name meta.json -printf '%h\n' | xargs -r du -sbc | awk '$2=="total" {print $1}' | tail -1)"
  fact "${name}_block_samples" "$(find "$root" -mindepth 2 -maxdepth 2 -name meta.json -print0 |
    xargs -0 -r python3 -c "import json,sys; print(sum(int((m:=json.load(open(f))).get('stats', m).get('numSamples', m.get('samples', 0))) for f in sys.argv[1:]))")"
  fact "${name}_wal_bytes" "$(du -sbc "$@" 2>/dev/null | awk '$2=="total" {print $1}')"
  echo "$name: queries..." >&2
  "$LG" metrics-query --url "$api" --end-ms "$END_MS" --repeat "$QUERY_RUNS" > "$WORK/$name-query.json"
  fact "${name}_rss_peak" "$(status_kb "$pid" VmHWM)"
}

# Prometheus
start_prom "$WORK/prom" "$WORK/prom.yml"
replay_one prom "$PROM_PID" "http://$PROM/api/v1/write" "$PROM_API" prom_metric prometheus_tsdb_blocks_loaded \
  "$WORK/prom" "$WORK/prom/wal" "$WORK/prom/chunks_head"
fact prom_series "$(prom_metric prometheus_tsdb_head_series)"
echo "prom: kill -9 and restart..." >&2
kill -9 $PROM_PID; wait $PROM_PID 2>/dev/null || true
t0=$(now)
"$PROM_BIN" --config.file="$WORK/prom.yml" --storage.tsdb.path="$WORK/prom" --web.listen-address=$PROM \
  --web.enable-remote-write-receiver --storage.tsdb.retention.time=15d --log.level=warn \
  --query.max-samples=$MAX_SAMPLES --query.timeout=$QUERY_TIMEOUT >/dev/null 2>>"$WORK/prom.err" &
PROM_PID=$!
"$LG" metrics-wait --url "$PROM_API" --query 'count(bench_resident_bytes)' --time-ms "$END_MS" --expect "$GAUGES" > "$WORK/prom-wait.json"
fact prom_restart "$(python3 -c "print($(now)-$t0)")"
fact prom_rss_restarted "$(status_kb $PROM_PID VmRSS)"
stop $PROM_PID

# Signalbox
start_sb "$WORK/sb" "$WORK/sb.toml"
replay_one sb "$SB_PID" "http://$CONSOLE/prometheus/api/v1/write" "$SB_API" sb_metric signalbox_tsdb_blocks \
  "$WORK/sb/metrics/blocks" "$WORK/sb/metrics/wal"
fact sb_series "$(sb_metric signalbox_tsdb_head_series)"
echo "sb: kill -9 and restart..." >&2
kill -9 $SB_PID; wait $SB_PID 2>/dev/null || true
t0=$(now)
RUST_LOG=warn "$SB_BIN" serve --config "$WORK/sb.toml" --data-dir "$WORK/sb" --console-listen $CONSOLE \
  --listen 127.0.0.1:19961 --consul-listen 127.0.0.1:19962 --otlp-grpc-listen 127.0.0.1:19963 \
  --otlp-http-listen 127.0.0.1:19964 --zipkin-listen 127.0.0.1:19965 >/dev/null 2>>"$WORK/sb.err" &
SB_PID=$!
"$LG" metrics-wait --url "$SB_API" --query 'count(bench_resident_bytes)' --time-ms "$END_MS" --expect "$GAUGES" > "$WORK/sb-wait.json"
fact sb_restart "$(python3 -c "print($(now)-$t0)")"
fact sb_rss_restarted "$(status_kb $SB_PID VmRSS)"
stop $SB_PID
fact load_after "$(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK" "$SERIES" "$SAMPLES" "$TARGETS" "$TARGET_SERIES" "$CONCURRENCY" "$QUERY_RUNS" "$((SPACING_MS / 1000))" <<'PY' | tee "$OUT/metrics-$(date -u +%Y%m%dT%H%M%SZ).txt"
import json, sys
w, series, samples, targets, tseries, conc, runs, spacing = sys.argv[1], *map(int, sys.argv[2:])
f = dict(l.rstrip("\n").split("=", 1) for l in open(f"{w}/facts") if "=" in l)
num = lambda k: float(f[k])
load = lambda n: json.load(open(f"{w}/{n}.json"))
gen, pr, sr, pq, sq = load("gen"), load("prom-replay"), load("sb-replay"), load("prom-query"), load("sb-query")
rows = []
def row(what, p, s, unit_fmt, goal="", lower_better=True):
    ratio = s / p if p else float("nan")
    rows.append(f"| {what} | {unit_fmt.format(p)} | {unit_fmt.format(s)} | {ratio:.2f}× | {goal} |")
secs = num("scrape_seconds")
row("scrape: samples appended/s", num("scrape_prom_samples") / secs, num("scrape_sb_samples") / secs, "{:,.0f}")
row("scrape: server CPU µs/sample", num("scrape_prom_cpu") * 1e6 / num("scrape_prom_samples"),
    num("scrape_sb_cpu") * 1e6 / num("scrape_sb_samples"), "{:.2f}")
row("scrape: RSS per head series, bytes", num("scrape_prom_rss") * 1024 / num("scrape_prom_series"),
    num("scrape_sb_rss") * 1024 / num("scrape_sb_series"), "{:,.0f}", "≤ 1 KB")
row("scrape: (RSS − idle RSS) per head series, bytes", (num("scrape_prom_rss") - num("scrape_prom_rss_idle")) * 1024 / num("scrape_prom_series"),
    (num("scrape_sb_rss") - num("scrape_sb_rss_idle")) * 1024 / num("scrape_sb_series"), "{:,.0f}", "≤ 1 KB")
row("replay: ingest samples/s", pr["samples_per_second"], sr["samples_per_second"], "{:,.0f}", "≥ 2×")
row("replay: server CPU µs/sample while ingesting", pr["node_cpu_us_per_sample"], sr["node_cpu_us_per_sample"], "{:.2f}")
row("replay: server CPU µs/sample incl. block cut", num("prom_cpu_total") * 1e6 / pr["samples"],
    num("sb_cpu_total") * 1e6 / max(sr["samples"], 1), "{:.2f}")
pb = num("prom_block_bytes") / max(num("prom_block_samples"), 1); sb = num("sb_block_bytes") / max(num("sb_block_samples"), 1)
row("disk: block bytes/sample (after the head cut)", pb, sb, "{:.3f}", "≤ 0.5×")
row("disk: WAL (+ head chunks) MiB at the end", num("prom_wal_bytes") / 2**20, num("sb_wal_bytes") / 2**20, "{:.1f}")
row("memory: RSS per head series after the replay, bytes", num("prom_rss") * 1024 / num("prom_series"),
    num("sb_rss") * 1024 / num("sb_series"), "{:,.0f}", "≤ 1 KB")
row("memory: (RSS − idle RSS) per head series, bytes", (num("prom_rss") - num("prom_rss_idle")) * 1024 / num("prom_series"),
    (num("sb_rss") - num("sb_rss_idle")) * 1024 / num("sb_series"), "{:,.0f}", "≤ 1 KB")
row("restart after kill -9 until the data answers, s", num("prom_restart"), num("sb_restart"), "{:.2f}")
for name in pq:
    if "error" in pq[name] or "error" in sq[name]:
        shown = lambda r, k: f"failed: {r['error'][:80]}" if "error" in r else f"{r[k]:.1f}"
        for k in ("p50_ms", "p99_ms"):
            rows.append(f"| query {name} {k[:3]} ms | {shown(pq[name], k)} | {shown(sq[name], k)} | – | ≤ 0.5× |")
        continue
    row(f"query {name} p50 ms", pq[name]["p50_ms"], sq[name]["p50_ms"], "{:.1f}", "≤ 0.5×")
    row(f"query {name} p99 ms", pq[name]["p99_ms"], sq[name]["p99_ms"], "{:.1f}", "≤ 0.5×")
print(f"Scrape: {targets} targets × {tseries:,} series every 10 s for {secs:.0f} s, both systems at once. "
      f"Replay: {series:,} series × {samples:,} samples {spacing} s apart ({gen['samples']:,} samples, "
      f"{gen['snappy_bytes'] / gen['samples']:.1f} snappy bytes/sample on the wire), {gen['requests']:,} requests of 2,000 samples, "
      f"{conc} shards (senders). Queries: {runs} runs after a warm-up. Machine: {f['cpu']}, load average {f['load_before']} before, "
      f"{f['load_after']} after (other engineers' builds), load generator included.\n")
print(f"| measure | Prometheus ({f['prom_version'].split(' (')[0]}) | Signalbox | Signalbox / Prometheus | goal |")
print("|---|---|---|---|---|")
print("\n".join(rows))
print()
print(f"- Scrape: head series {int(num('scrape_prom_series')):,} / {int(num('scrape_sb_series')):,}; targets up "
      f"{f['scrape_prom_up']} / {f['scrape_sb_up']} of {targets}; RSS {num('scrape_prom_rss') / 1024:.0f} / {num('scrape_sb_rss') / 1024:.0f} MiB "
      f"(idle {num('scrape_prom_rss_idle') / 1024:.0f} / {num('scrape_sb_rss_idle') / 1024:.0f}); "
      f"other processes used {num('scrape_other_cpu') / secs:.2f} cores meanwhile.")
for n, r in (("Prometheus", pr), ("Signalbox", sr)):
    print(f"- Replay into {n}: {r['samples']:,} samples in {r['seconds']:.1f} s, {r['samples_failed']:,} failed "
          f"{r['failed_statuses'] or ''} {('first: ' + r['first_failure']) if r['first_failure'] else ''}, "
          f"{r['retried_requests']} retried; server {r['node_cpu_seconds'] / r['seconds']:.2f} cores, "
          f"generator {r['generator_cpu_seconds'] / r['seconds']:.2f}.")
for k, n in (("prom", "Prometheus"), ("sb", "Signalbox")):
    print(f"- {n} after the replay: {int(num(k + '_blocks'))} block(s) (expected {f['expect_blocks']}) "
          f"{num(k + '_block_bytes') / 2**20:.1f} MiB holding {int(num(k + '_block_samples')):,} samples, cut {num(k + '_t_blocks'):.0f} s "
          f"after the replay ended; head series {int(num(k + '_series')):,}; RSS {num(k + '_rss') / 1024:.0f} MiB "
          f"(idle {num(k + '_rss_idle') / 1024:.0f}, peak {num(k + '_rss_peak') / 1024:.0f}, after the restart {num(k + '_rss_restarted') / 1024:.0f}); "
          f"other processes used {num(k + '_other_cpu') / (pr if k == 'prom' else sr)['seconds']:.2f} cores during the replay.")
print("- Query answers (series / points), Prometheus vs Signalbox: " + "; ".join(
    f"{n} {pq[n].get('series', '–')}/{pq[n].get('points', '–')} vs {sq[n].get('series', '–')}/{sq[n].get('points', '–')}" for n in pq))
PY
